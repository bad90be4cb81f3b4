"""How a call on the lean gRPC client ends: its status (a gRPC code name and a
message), read from trailers, from an HTTP status, or from an HTTP/2 reset, with
the codes grpcio gives the same events (PROTOCOL-HTTP2.md in grpc/grpc)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.grpc_status import grpc_code_name
from proxy.grpcwire.messages import decode_status_message

# HTTP status of a response that is not gRPC -> the gRPC code (http-grpc-status-mapping.md).
_FROM_HTTP = {
    400: "INTERNAL",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "UNIMPLEMENTED",
    429: "UNAVAILABLE",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}

# HTTP/2 error code of a RST_STREAM -> the gRPC code; unlisted ones are INTERNAL.
_FROM_RESET = {
    0x7: "UNAVAILABLE",  # REFUSED_STREAM: nothing was processed (marked refused)
    0x8: "CANCELLED",
    0xB: "RESOURCE_EXHAUSTED",  # ENHANCE_YOUR_CALM
    0xC: "PERMISSION_DENIED",  # INADEQUATE_SECURITY
}


@dataclass(frozen=True, slots=True)
class Status:
    """The end of a call: ``code`` is the gRPC code name ("OK", "UNAVAILABLE", ...).
    ``refused``: the server provably did not process the call (never sent, refused
    with REFUSED_STREAM, or beyond a GOAWAY's last stream)."""

    code: str
    message: str = ""
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.code == "OK"


OK = Status("OK")


class RpcError(Exception):
    """A call (or the connection under it) failed; ``code`` is the gRPC code name."""

    def __init__(self, code: str, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.refused = refused  # as Status.refused

    @classmethod
    def of(cls, status: Status) -> RpcError:
        return cls(status.code, status.message, refused=status.refused)


def status_from_trailers(headers: list[tuple[bytes, bytes]]) -> Status | None:
    """The status the server sent (trailers or a trailers-only response); None without one."""
    code: str | None = None
    message = ""
    for name, value in headers:
        if name == b"grpc-status":
            text = value.decode("ascii", "replace")
            code = grpc_code_name(int(text)) if text.isdigit() else "UNKNOWN"
        elif name == b"grpc-message":
            message = decode_status_message(value.decode("ascii", "replace"))
    return None if code is None else Status(code, message)


def check_response_head(headers: list[tuple[bytes, bytes]]) -> Status | None:
    """None when the response headers start a gRPC response; else the status ending the call."""
    http_status = b""
    content_type = b""
    for name, value in headers:
        if name == b":status":
            http_status = value
        elif name == b"content-type":
            content_type = value
    if http_status != b"200":
        number = int(http_status) if http_status.isdigit() else 0
        return Status(
            _FROM_HTTP.get(number, "UNKNOWN"), f"Received http2 header with status: {number}"
        )
    if not content_type.startswith(b"application/grpc"):
        return Status("UNKNOWN", f"unexpected content-type {content_type.decode('latin-1')!r}")
    return None


def status_from_reset(error_code: int) -> Status:
    code = _FROM_RESET.get(error_code, "INTERNAL")
    return Status(code, f"Received RST_STREAM with error code {error_code}", error_code == 0x7)
