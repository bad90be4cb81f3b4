"""gRPC status code names by number, as Dapr and grpc-go spell them."""

from __future__ import annotations

GRPC_CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


def grpc_code_name(number: int) -> str:
    return GRPC_CODE_NAMES[number] if 0 <= number < len(GRPC_CODE_NAMES) else "UNKNOWN"
