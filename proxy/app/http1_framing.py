"""HTTP/1.1 message framing on the client side of the app channel (RFC 9112), as pure
functions: the request head we write, chunked framing of a streamed request body,
and, from a parsed response head, how its body is delimited and whether the
connection can carry another request. Parsing the app's bytes is llhttp's (httptools),
driven by ``proxy.app.connection``; only these decisions around it are ours."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.core.errors import AppChannelError
from proxy.core.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, connection_options

Headers = Sequence[tuple[bytes, bytes]]

# A response head (status line and fields, or trailers) may not exceed this.
MAX_HEAD_BYTES = 64 * 1024

# RFC 9110 tchar: what a method or a field name may be made of.
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# What a field value may hold: visible characters, obs-text, SP and HTAB. Control
# bytes (CR, LF, NUL, ...) are left over when these are deleted from a head, and
# there must be no other control bytes than the CRLF ending each line we wrote.
_FIELD_BYTES = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t"


class AppProtocolError(Exception):
    """The app's answer breaks HTTP/1.1 (syntax, framing or size)."""


def request_head(verb: str, target: str, host: bytes, headers: Headers, framing: bytes) -> bytes:
    """The request line and fields: ``host`` first (as RFC 9112 asks), then
    ``headers`` in order, then ``framing`` (a whole ``content-length`` or
    ``transfer-encoding`` line, or nothing).

    Raises AppChannelError for a method or name that is not a token, a target with
    spaces or control bytes, or a value holding a CR, LF or other control byte:
    nothing is ever written that could split the head.
    """
    if (verb not in _METHODS and not _is_token(verb)) or not _is_target(target):
        raise AppChannelError(f"cannot write the request line for {verb} {target!r}")
    try:
        line = f"{verb} {target} HTTP/1.1\r\nhost: ".encode("latin-1")
    except UnicodeEncodeError as exc:
        raise AppChannelError(f"cannot write the request target {target!r}") from exc
    parts = [line, host, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts += (framing, b"\r\n")
    head = b"".join(parts)
    lines = len(headers) + 3 + (1 if framing else 0)
    if head.translate(None, _FIELD_BYTES) != b"\r\n" * lines:
        raise AppChannelError("a request header holds a control character (CR, LF, NUL, ...)")
    # An empty name would start a line with the colon.
    names = b"".join([name for name, _ in headers])
    if names.translate(None, _TOKEN_BYTES) or b"\n:" in head:
        raise AppChannelError("a request header name is not a token")
    return head


def _is_token(text: str) -> bool:
    return text.isascii() and bool(text) and not text.encode().translate(None, _TOKEN_BYTES)


def _is_target(text: str) -> bool:
    # Printable (no control character, C1 ones included) and without a space.
    return bool(text) and text.isprintable() and " " not in text


def content_length_line(length: int) -> bytes:
    return b"content-length: %d\r\n" % length


CHUNKED_LINE = b"transfer-encoding: chunked\r\n"


def response_framing(
    status: int, version: str, head_request: bool, headers: Headers
) -> tuple[int, int | None, bool]:
    """For a final (non-1xx) response head: how its body is delimited, its declared
    Content-Length (None without one), and whether the connection may carry another
    request once the body is read.

    ``headers`` have lower-case names; llhttp has already refused a Content-Length
    that is not digits, two of them, and Content-Length beside Transfer-Encoding.
    Raises AppProtocolError for a Transfer-Encoding other than ``chunked`` (the body
    could not be passed on as it is meant to be read).
    """
    length: int | None = None
    codings: bytes | None = None
    connection: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            if length is None:
                length = int(value)
        elif name == b"transfer-encoding":
            codings = value if codings is None else codings + b"," + value
        elif name == b"connection":
            connection.append(value)
    if head_request or status < 200 or status in (204, 304):
        framing = NO_BODY  # whatever the fields announce, nothing follows the head
    elif codings is not None:
        listed = [coding.strip(b" \t").lower() for coding in codings.split(b",")]
        if [coding for coding in listed if coding] != [b"chunked"]:
            raise AppProtocolError(f"unsupported Transfer-Encoding {codings.decode('latin-1')!r}")
        framing = CHUNKED
    elif length is not None:
        framing = LENGTH
    else:
        framing = UNTIL_CLOSE
    options = connection_options(connection)
    if framing == UNTIL_CLOSE or b"close" in options:
        keep_alive = False
    elif version == "1.1":
        keep_alive = True
    elif version == "1.0":
        # HTTP/1.0 persists only on request (RFC 9112 section 9.3, as Go's transport
        # reads it); a Transfer-Encoding there is faulty framing, so never reused.
        keep_alive = b"keep-alive" in options and codings is None
    else:
        keep_alive = False
    return framing, length, keep_alive
