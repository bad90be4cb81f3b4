"""The bytes of the server's answers (RFC 9112), pure: a response head with the framing
its body needs (Content-Length for a whole body, chunked for a streamed one of unknown
length, close-delimited to an HTTP/1.0 client, none for HEAD, 1xx, 204 and 304), the
keep-alive decision, body pieces in that framing, and error answers that close."""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.core.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, connection_options
from proxy.edge.http_messages import REASONS, ErrorBody, HttpResponse

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Control bytes other than tab; CR and LF would split the response (pitfalls D.8).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")
# Headers the server decides itself: the handler's copies are dropped.
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection", b"keep-alive"))
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class InvalidResponse(ValueError):
    """The response cannot be sent as valid HTTP/1.1 (answered 502 if nothing was sent)."""


@dataclass(slots=True)
class AnswerHead:
    head: bytes
    framing: int
    length: int  # for LENGTH; -1 otherwise
    keep_alive: bool


def answer_head(
    response: HttpResponse, head_request: bool, http10: bool, keep_alive: bool
) -> AnswerHead:
    """The head of ``response`` to a request (HEAD or not, HTTP/1.0 or 1.1, whose client
    keeps alive or not); raises InvalidResponse for a status, header name or value that
    is not valid HTTP (a CR or LF in a value would let the upstream split the response)."""
    status = response.status
    if not 200 <= status <= 999:
        raise InvalidResponse(f"status {status}")
    body = response.body
    declared: bytes | None = None
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
    for name, value in response.headers:
        if not _TOKEN.match(name):
            raise InvalidResponse(f"header name {name!r}")
        if _CONTROL.search(value):
            raise InvalidResponse(f"header value {value!r} of {name.decode()}")
        lowered = name.lower()
        if lowered in _FRAMING:
            if lowered == b"content-length":
                if not _DIGITS.match(value) or (declared is not None and value != declared):
                    raise InvalidResponse(f"Content-Length {value!r}")
                declared = value
            elif lowered == b"connection" and b"close" in connection_options((value,)):
                keep_alive = False
            continue
        lines += (name, b": ", value, b"\r\n")
    length = -1
    if head_request or status in (204, 304):
        framing = NO_BODY
        if declared is not None:  # HEAD tells the length a GET would have
            lines += (b"content-length: ", declared, b"\r\n")
        elif body.complete and status not in (204, 304):
            lines.append(b"content-length: %d\r\n" % len(body.head))
    elif body.complete:
        framing, length = LENGTH, len(body.head)
        if declared is not None and int(declared) != length:
            raise InvalidResponse(f"Content-Length {declared!r} for a body of {length} bytes")
        lines.append(b"content-length: %d\r\n" % length)
    elif declared is not None:
        framing, length = LENGTH, int(declared)
        lines += (b"content-length: ", declared, b"\r\n")
    elif http10:
        framing, keep_alive = UNTIL_CLOSE, False
    else:
        framing = CHUNKED
        lines.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        lines.append(b"connection: close\r\n\r\n")
    elif http10:
        lines.append(b"connection: keep-alive\r\n\r\n")
    else:
        lines.append(b"\r\n")
    return AnswerHead(b"".join(lines), framing, length, keep_alive)


def error_answer(error: ErrorBody, head_request: bool) -> bytes:
    """A whole error response that tells the client the connection closes."""
    status = error.status
    body = error.body
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    data = head % (status, REASONS.get(status, b""), error.content_type, len(body))
    return data if head_request else data + body
