"""What the HTTP/1.1 server hands to its handler and takes back: requests, responses,
limits, and the hook that words error answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

from proxy.core.body import Body
from proxy.edge.body_pace import BodyPacePolicy

Headers = list[tuple[bytes, bytes]]
# Reason phrases as daprd (Go's net/http) writes them; clients such as the Dapr SDK show them.
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class ErrorBody(Protocol):
    """What an error answer carries; its wording is the caller's."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> bytes: ...
    @property
    def content_type(self) -> bytes: ...


# Turns a status and a plain reason into an error answer's body. The server uses it
# for requests it refuses itself (400, 413, 414, 431, 502) and for a handler that
# raised (500, with a reason that leaks nothing).
Reject = Callable[[int, str], ErrorBody]


@dataclass(frozen=True, slots=True)
class PlainError:
    status: int
    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"


def plain_reject(status: int, reason: str) -> PlainError:
    """The default: a one-line text body, as Go's net/http writes for a bad request."""
    phrase = REASONS.get(status, b"").decode()
    return PlainError(status, f"{status} {phrase}: {reason}".encode())


@dataclass(slots=True)
class HttpRequest:
    verb: str
    target: str
    headers: Headers
    body: Body
    # Set when reading a streamed body failed; the edge answers 413/400 for it.
    body_error: Exception | None = None


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Headers
    body: Body = field(default_factory=Body)

    @classmethod
    def of(cls, error: ErrorBody) -> HttpResponse:
        return cls(error.status, [(b"content-type", error.content_type)], Body(error.body))


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Called after each response: request, status, latency (ms), body bytes in, body bytes out.
Observer = Callable[[HttpRequest, int, float, int, int], None]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 4 * 1024
    max_body_size: int = 4 * 1024 * 1024
    # Go's http.Server with only ReadHeaderTimeout set (daprd) also uses it as
    # the keep-alive idle timeout; we do the same.
    header_timeout: float = 10.0
    # Bodies up to this size (declared, or chunked and ending within it) are
    # read whole before the handler runs, so they are checked before anything
    # is forwarded and can be sent in one message (and replayed); larger ones
    # stream through in pieces.
    replay_buffer_size: int = 4 * 1024 * 1024
    # After an error answer the client may still be sending (200 KB of headers, a
    # body over the limit). Closing with unread input makes the kernel send a reset,
    # which can destroy the answer before the client reads it; so we half-close and
    # read and drop what still comes, up to these bounds, like nginx's lingering_close.
    linger_time: float = 2.0
    linger_bytes: int = 16 * 1024 * 1024
    # Open connections at most; at the cap an idle keep-alive one is closed to make
    # room (as nginx reclaims them), and without one the new connection is refused.
    max_connections: int = 4096
    # How slowly a client may send a body before it gets a 408 (see body_pace).
    body_pace: BodyPacePolicy = field(default_factory=BodyPacePolicy)
