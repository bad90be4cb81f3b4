"""The version tether reports (metadata API, JSON logs)."""

RUNTIME_VERSION = "tether-0.1.0"
