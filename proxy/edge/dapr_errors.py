"""Dapr's error bodies: the one place errors become responses."""

from __future__ import annotations

import json
from dataclasses import dataclass

from proxy.hop.call import InvokeError, InvokeMalformed

ERR_DIRECT_INVOKE = "ERR_DIRECT_INVOKE"
ERR_HEALTH_NOT_READY = "ERR_HEALTH_NOT_READY"
ERR_HEALTH_APPID_NOT_MATCH = "ERR_HEALTH_APPID_NOT_MATCH"
ERR_OUTBOUND_HEALTH_NOT_READY = "ERR_OUTBOUND_HEALTH_NOT_READY"
ERR_MALFORMED_REQUEST = "ERR_MALFORMED_REQUEST"
ERR_INTERNAL = "ERR_INTERNAL"
ERR_MALFORMED_RESPONSE = "ERR_MALFORMED_RESPONSE"

NO_APP_ID_MESSAGE = "failed getting app id either from the URL path or the header dapr-app-id"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    status: int
    body: bytes
    content_type: bytes = b"application/json"


def error_json(status: int, code: str, message: str) -> ErrorResponse:
    body = json.dumps({"errorCode": code, "message": message}, separators=(",", ":"))
    return ErrorResponse(status, body.encode())


def direct_invoke_failed(app_id: str, reason: str, status: int = 500) -> ErrorResponse:
    """Dapr's message for a call that did not reach the app."""
    return error_json(status, ERR_DIRECT_INVOKE, f"failed to invoke, id: {app_id}, err: {reason}")


def invoke_failed(error: InvokeError) -> ErrorResponse:
    """An invocation that failed before the app answered, with the status its kind maps to."""
    if isinstance(error, InvokeMalformed):
        return error_json(500, ERR_MALFORMED_RESPONSE, error.reason)
    return direct_invoke_failed(error.target_id, error.reason, error.http_status)


def no_app_id() -> ErrorResponse:
    return error_json(404, ERR_DIRECT_INVOKE, NO_APP_ID_MESSAGE)


def invalid_api_token() -> ErrorResponse:
    # Dapr answers a bad token with a plain-text body, not the JSON shape.
    return ErrorResponse(401, b"invalid api token", b"text/plain")


def rejected(status: int, reason: str) -> ErrorResponse:
    """The HTTP server's refusals (and a handler that raised, 500) in Dapr's shape."""
    return error_json(status, ERR_INTERNAL if status == 500 else ERR_MALFORMED_REQUEST, reason)
