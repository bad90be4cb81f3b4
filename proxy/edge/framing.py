"""Pure HTTP/1.1 framing decisions the server makes around h11: which request heads a
proxy must refuse although h11 accepts them, and when closing could reset the
connection under an answer the client has not read yet."""

from __future__ import annotations

import re

import h11

# Control bytes other than tab: h11 lets them through in header values; Go's server
# (and so daprd) refuses them, and an app or a log downstream may trip on them.
_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def may_still_send(conn: h11.Connection) -> bool:
    """We answered and are closing while the client may still be sending the request
    (or more of them): closing now could reset the connection under our answer."""
    answered = conn.our_state in (h11.DONE, h11.MUST_CLOSE)
    return answered and conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)


def body_framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The declared Content-Length (None without one) and whether the body is chunked,
    of a head ``head_problem`` accepted (h11 has checked the values)."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


def head_problem(request: h11.Request, raw: bytes | bytearray, limit: int) -> tuple[int, str]:
    """What h11 accepts but a proxy must refuse (peers-and-pitfalls D.1, D.3, D.5, D.9).

    h11 only limits a head that arrives in pieces, so sizes are checked here too.
    ``raw`` holds the bytes read while waiting for this head (empty when the
    request was pipelined behind another).
    """
    if len(request.target) + len(request.method) + 11 > limit:
        return 414, f"request line exceeds {limit} bytes"
    has_length = has_te = False
    hosts = 0
    control = False
    size = len(request.target) + len(request.method) + 13
    for name, value in request.headers:
        size += len(name) + len(value) + 4
        control = control or _CONTROL_BYTE.search(value) is not None
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            has_te = True
        elif name == b"host":
            hosts += 1
    if size > limit:
        return 431, f"request headers exceed {limit} bytes"
    if has_length and has_te:
        return 400, "both Content-Length and Transfer-Encoding are present"
    if has_te and request.http_version == b"1.0":
        return 400, "Transfer-Encoding is not allowed on HTTP/1.0"
    if hosts > 1:
        return 400, "more than one Host header"
    if control:
        return 400, "a header value holds a control character"
    head_end = raw.find(b"\r\n\r\n")
    if head_end > 0 and (raw.find(b"\n ", 0, head_end) > 0 or raw.find(b"\n\t", 0, head_end) > 0):
        return 400, "obsolete line folding in a header"
    return 0, ""
