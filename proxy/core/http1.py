"""HTTP/1.1 message framing both ends of the sidecar share (RFC 9112): how a body is
delimited, chunked framing, and the options a ``Connection`` field lists. The edge
(a server) and the app channel (a client) each decide the rest around llhttp."""

from __future__ import annotations

from collections.abc import Iterable

# How a message's body is delimited (RFC 9112 section 6).
NO_BODY = 0  # HEAD answers, 1xx, 204, 304: nothing follows the head
LENGTH = 1  # Content-Length
CHUNKED = 2  # Transfer-Encoding: chunked
UNTIL_CLOSE = 3  # neither: the body runs to the end of the connection

LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> tuple[bytes, ...]:
    """One piece of a chunked body, as pieces to write (``data`` is not copied). An
    empty piece frames to nothing: a zero-size chunk would end the body."""
    if not data:
        return ()
    return (b"%x\r\n" % len(data), data, b"\r\n")


def connection_options(values: Iterable[bytes]) -> set[bytes]:
    """The options (lower-case) that ``Connection`` field values list, e.g. ``close``."""
    return {
        option
        for value in values
        for option in (part.strip(b" \t").lower() for part in value.split(b","))
        if option
    }
