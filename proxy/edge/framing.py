"""Pure HTTP/1.1 decisions the server makes on requests around the parser (llhttp, via
httptools; RFC 9112): which heads a proxy refuses although the parser accepts them,
how a request's body is framed, whether the client keeps the connection alive, the
size limits of a head, and what status a parser error answers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from httptools import HttpParserError

from proxy.core.http1 import connection_options

# The token characters (RFC 9110 §5.6.2) a method is made of.
_TOKEN_PREFIX = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
# A longer method is not waited for to its end.
MAX_METHOD = 24
# The request line's bytes besides method and target: two spaces, "HTTP/1.1", CRLF.
LINE_EXTRA = 12


@dataclass(slots=True)
class HeadVerdict:
    """What the server makes of an accepted head; ``status`` 0 when nothing is wrong."""

    status: int = 0
    reason: str = ""
    length: int | None = None  # the declared Content-Length
    chunked: bool = False
    keep_alive: bool = True
    expect_continue: bool = False


def judge_head(version: str, headers: list[tuple[bytes, bytes]]) -> HeadVerdict:
    """Check a head llhttp parsed (names lower-case) for what a proxy refuses besides
    the parser's own strictness (peers-and-pitfalls D.1, D.3, D.5), and read its framing."""
    verdict = HeadVerdict()
    if version != "1.1" and version != "1.0":
        verdict.status, verdict.reason = 505, f"HTTP/{version} is not supported"
        return verdict
    hosts = 0
    coding: bytes | None = None
    options: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            verdict.length = int(value)  # llhttp let only digits (and one header) through
        elif name == b"host":
            hosts += 1
        elif name == b"transfer-encoding":
            coding = value
        elif name == b"connection":
            options.append(value)
        elif name == b"expect":
            verdict.expect_continue = value.strip().lower() == b"100-continue"
    http10 = version == "1.0"
    listed = connection_options(options)
    verdict.keep_alive = b"close" not in listed and (b"keep-alive" in listed or not http10)
    verdict.expect_continue = verdict.expect_continue and not http10
    if coding is not None:
        if verdict.length is not None:
            return _refused(verdict, 400, "both Content-Length and Transfer-Encoding are present")
        if http10:
            return _refused(verdict, 400, "Transfer-Encoding is not allowed on HTTP/1.0")
        if coding.strip().lower() != b"chunked":
            # gzip and the like would reach the app still coded: as h11 did, refuse.
            return _refused(verdict, 501, "only Transfer-Encoding: chunked is supported")
        verdict.chunked = True
    if hosts > 1:
        return _refused(verdict, 400, "more than one Host header")
    if hosts == 0 and not http10:
        return _refused(verdict, 400, "missing Host header")
    return verdict


def _refused(verdict: HeadVerdict, status: int, reason: str) -> HeadVerdict:
    verdict.status, verdict.reason = status, reason
    return verdict


def head_size_problem(line: int, headers: int, limit: int) -> tuple[int, str]:
    """The request line over ``limit`` bytes is a 414; with the headers, a 431."""
    if line > limit:
        return 414, f"request line exceeds {limit} bytes"
    if line + headers > limit:
        return 431, f"request headers exceed {limit} bytes"
    return 0, ""


def parser_error_answer(error: HttpParserError) -> tuple[int, str]:
    """The status for what llhttp refused (a refused method: ``method_answer``)."""
    reason = str(error) or "malformed request"
    if reason == "Invalid HTTP version":
        return 505, "HTTP version not supported"
    if reason == "Request has invalid `Transfer-Encoding`":
        return 501, "only Transfer-Encoding: chunked is supported"
    return 400, reason


def method_answer(start: bytes, final: bool) -> tuple[int, str] | None:
    """The status for a method llhttp refused, from the first bytes of the request;
    None while they do not tell yet (more may come, unless ``final``).

    llhttp knows the registered methods only (h11 and Go's server took any token): a
    well-formed other one is "not implemented" (RFC 9110 §9.1), anything else is 400.
    The answer must not depend on how the bytes were split into reads.
    """
    start = start.lstrip(b"\r\n")
    token = _TOKEN_PREFIX.match(start)
    end = token.end() if token is not None else 0
    if end < len(start):
        if end and start[end : end + 1] == b" ":
            return 501, "request method not implemented"
        return 400, "invalid request method"
    if final or end > MAX_METHOD:
        return 400, "invalid request method"
    return None
