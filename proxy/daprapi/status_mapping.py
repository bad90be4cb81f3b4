"""How an invocation's outcome looks on the Dapr gRPC API, as daprd shapes it
(``pkg/api/grpc/grpc.go`` InvokeService, ``pkg/messaging/v1/util.go``): pure
functions of plain values, so the mapping is tested without sockets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from proxy.hop.call import Headers, InvokeDenied, InvokeError, InvokeRejected
from proxy.hop.header_rules import HOP_BY_HOP
from proxy.observability.trace_context import format_traceparent
from proxy.observability.trace_propagation import grpc_metadata_trace

# Header metadata daprd adds to every answer of an HTTP app: the app's status.
DAPR_HTTP_STATUS = "dapr-http-status"
ERROR_INFO_DOMAIN = "dapr.io"
# daprd keeps at most this many characters of the app's body in the ErrorInfo.
MAX_ERROR_MESSAGE = 63

# codes.CodeFromHTTPStatus (grpc-go's mapping as Dapr uses it); 2xx is OK, the rest UNKNOWN.
_GRPC_FROM_HTTP = {
    408: "CANCELLED",
    500: "UNKNOWN",
    400: "INTERNAL",
    504: "DEADLINE_EXCEEDED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    403: "PERMISSION_DENIED",
    401: "UNAUTHENTICATED",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}

# App response headers that are no gRPC metadata: the HTTP connection's own.
_HOP_BY_HOP = HOP_BY_HOP | {b"content-length"}
# HTTP headers that gRPC reserves or that Go calls "permanent": sent as "dapr-<name>"
# (invokev1.InternalMetadataToGrpcMetadata with HTTP header conversion).
_PREFIXED = frozenset(
    (
        b"accept",
        b"accept-charset",
        b"accept-encoding",
        b"accept-language",
        b"accept-ranges",
        b"authorization",
        b"cache-control",
        b"content-type",
        b"cookie",
        b"date",
        b"expect",
        b"from",
        b"host",
        b"if-match",
        b"if-modified-since",
        b"if-none-match",
        b"if-unmodified-since",
        b"max-forwards",
        b"origin",
        b"pragma",
        b"referer",
        b"user-agent",
        b"via",
        b"warning",
    )
)
_METADATA_NAME = re.compile(rb"^[0-9a-z_.-]+$")
_METADATA_VALUE = re.compile(rb"^[\x20-\x7e]*$")


@dataclass(frozen=True, slots=True)
class GrpcError:
    """A gRPC status to end a call with: its code name, message, and the
    ``google.rpc.ErrorInfo`` daprd attaches for an HTTP app's non-2xx answer."""

    code: str
    message: str
    error_info: tuple[str, str, dict[str, str]] | None = None  # (reason, domain, metadata)


def code_from_http_status(status: int) -> str:
    """Dapr's CodeFromHTTPStatus: the gRPC code name for an HTTP app's status."""
    if 200 <= status < 300:
        return "OK"
    return _GRPC_FROM_HTTP.get(status, "UNKNOWN")


def status_text(status: int) -> str:
    """Go's http.StatusText: the reason phrase, empty for a status without one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_from_http_status(status: int, body: bytes) -> GrpcError | None:
    """ErrorFromHTTPResponseCode: None for 2xx, else the status text as message and an
    ErrorInfo carrying the HTTP status and the start of the app's body."""
    code = code_from_http_status(status)
    if code == "OK":
        return None
    text = status_text(status)
    detail = body.decode("utf-8", "replace")[:MAX_ERROR_MESSAGE]
    metadata = {"http.code": str(status), "http.error_message": detail}
    return GrpcError(code, text, (text, ERROR_INFO_DOMAIN, metadata))


def error_from_invoke_error(error: InvokeError) -> GrpcError:
    """A call that never got the app's answer: the callee's refusal keeps its code
    (PERMISSION_DENIED, INVALID_ARGUMENT), anything else is ERR_DIRECT_INVOKE (INTERNAL)."""
    message = f"failed to invoke, id: {error.target_id}, err: {error.reason}"
    if isinstance(error, InvokeDenied):
        return GrpcError("PERMISSION_DENIED", message)
    if isinstance(error, InvokeRejected):
        return GrpcError("INVALID_ARGUMENT", message)
    return GrpcError("INTERNAL", message)


def response_metadata(headers: Headers, status: int) -> list[tuple[str, str]]:
    """An HTTP app's response headers as gRPC header metadata, plus dapr-http-status:
    hop-by-hop headers dropped, reserved and permanent ones as ``dapr-<name>``, and
    what gRPC metadata cannot carry (``grpc-*``, other characters) left out."""
    metadata: list[tuple[str, str]] = []
    for name, value in headers:
        name = name.lower()
        if name in _HOP_BY_HOP or name.startswith(b"grpc-") or name.endswith(b"-bin"):
            continue
        if not _METADATA_NAME.match(name) or not _METADATA_VALUE.match(value):
            continue
        if name in _PREFIXED:
            name = b"dapr-" + name
        metadata.append((name.decode("ascii"), value.decode("ascii")))
    metadata.append((DAPR_HTTP_STATUS, str(status)))
    return metadata


# Request metadata that is the gRPC call's own, not the app's: never forwarded as headers.
_NOT_FORWARDED = frozenset((b"content-type", b"te", b"dapr-api-token"))


def request_headers(metadata: tuple[tuple[str, str | bytes], ...], content_type: str) -> Headers:
    """The caller's gRPC metadata as the HTTP headers of the invocation: text values
    only (``-bin`` ones are gRPC's), not gRPC's own, the trace context as
    ``traceparent`` (also from ``grpc-trace-bin``), plus the message's content type."""
    headers: Headers = []
    for key, value in metadata:
        if isinstance(value, bytes) or key.startswith("grpc-") or key == "traceparent":
            continue
        name = key.encode("ascii")
        if name in _NOT_FORWARDED:
            continue
        headers.append((name, value.encode("latin-1", "replace")))
    # The caller's trace, from grpc-trace-bin (first, as daprd reads it) or traceparent.
    trace = grpc_metadata_trace(metadata)
    if trace is not None:
        headers.append((b"traceparent", format_traceparent(trace).encode("ascii")))
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1", "replace")))
    return headers
