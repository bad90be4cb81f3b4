"""``tether sentry``: a certificate authority service speaking Dapr's
``dapr.proto.sentry.v1.CA``, and the tokens that bind a sidecar to one identity."""
