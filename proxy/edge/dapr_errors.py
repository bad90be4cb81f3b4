"""Dapr's error bodies and status mappings: the one place errors become responses."""

from __future__ import annotations

import json
from dataclasses import dataclass

ERR_DIRECT_INVOKE = "ERR_DIRECT_INVOKE"
ERR_HEALTH_NOT_READY = "ERR_HEALTH_NOT_READY"
ERR_HEALTH_APPID_NOT_MATCH = "ERR_HEALTH_APPID_NOT_MATCH"
ERR_OUTBOUND_HEALTH_NOT_READY = "ERR_OUTBOUND_HEALTH_NOT_READY"
ERR_MALFORMED_REQUEST = "ERR_MALFORMED_REQUEST"
ERR_INTERNAL = "ERR_INTERNAL"

NO_APP_ID_MESSAGE = "failed getting app id either from the URL path or the header dapr-app-id"

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


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    status: int
    body: bytes
    content_type: bytes = b"application/json"


def error_json(status: int, code: str, message: str) -> ErrorResponse:
    body = json.dumps({"errorCode": code, "message": message}, separators=(",", ":"))
    return ErrorResponse(status, body.encode())


def http_status_from_grpc(code_name: str) -> int:
    return _HTTP_FROM_GRPC.get(code_name, 500)


def direct_invoke_failed(app_id: str, reason: str, status: int = 500) -> ErrorResponse:
    """Dapr's message for a call that did not reach the app."""
    return error_json(status, ERR_DIRECT_INVOKE, f"failed to invoke, id: {app_id}, err: {reason}")


def no_app_id() -> ErrorResponse:
    return error_json(404, ERR_DIRECT_INVOKE, NO_APP_ID_MESSAGE)


def invalid_api_token() -> ErrorResponse:
    # Dapr answers a bad token with a plain-text body, not the JSON shape.
    return ErrorResponse(401, b"invalid api token", b"text/plain")


def rejected(status: int, reason: str) -> ErrorResponse:
    """The HTTP server's refusals (and a handler that raised, 500) in Dapr's shape."""
    return error_json(status, ERR_INTERNAL if status == 500 else ERR_MALFORMED_REQUEST, reason)
