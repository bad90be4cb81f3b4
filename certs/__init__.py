"""Identity for mTLS between sidecars: SPIFFE IDs, a local CA, workload certificates, gRPC TLS."""
