"""gRPC status code names by number, as Dapr and grpc-go spell them, and the
HTTP status Dapr gives each."""

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


# pkg/messages: HTTPStatusFromCode (gRPC code name -> HTTP status).
_HTTP_FROM_GRPC = {
    "OK": 200,
    "CANCELLED": 408,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def http_status_from_grpc(code_name: str) -> int:
    return _HTTP_FROM_GRPC.get(code_name, 500)
