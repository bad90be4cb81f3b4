"""gRPC proxying: calls to any method, relayed message by message (opaque bytes)
from the Dapr gRPC API port to the target's sidecar and on to its app."""
