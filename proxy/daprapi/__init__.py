"""The Dapr gRPC API on ``--dapr-grpc-port``: ``dapr.proto.runtime.v1.Dapr`` as
apps and the official SDKs call it, served by the lean gRPC server (grpcwire).
Service invocation (``InvokeService``) and ``GetMetadata``; every other Dapr
method answers UNIMPLEMENTED."""
