"""The app channel's HTTP/1.1 framing (proxy.app.http1_framing): the request head it
writes, chunked request bodies, and how a response head decides the body's end and
the connection's reuse (RFC 9112 sections 6.3 and 9.3)."""

from __future__ import annotations

import h11
import pytest

from proxy.app.http1_framing import (
    CHUNKED_LINE,
    AppProtocolError,
    content_length_line,
    request_head,
    response_framing,
)
from proxy.core.errors import AppChannelError
from proxy.core.http1 import CHUNKED, LAST_CHUNK, LENGTH, NO_BODY, UNTIL_CLOSE

HOST = b"127.0.0.1:3000"


def test_request_head_puts_host_first_then_the_headers_in_order_then_the_framing() -> None:
    head = request_head(
        "POST",
        "/v1/orders?x=1",
        HOST,
        [(b"content-type", b"application/json"), (b"X-Trace", b"a b\tc")],
        content_length_line(12),
    )
    assert head == (
        b"POST /v1/orders?x=1 HTTP/1.1\r\n"
        b"host: 127.0.0.1:3000\r\n"
        b"content-type: application/json\r\n"
        b"X-Trace: a b\tc\r\n"
        b"content-length: 12\r\n"
        b"\r\n"
    )


def test_a_head_without_framing_has_no_framing_line() -> None:
    head = request_head("GET", "/", HOST, [], b"")
    assert head == b"GET / HTTP/1.1\r\nhost: 127.0.0.1:3000\r\n\r\n"


def test_an_independent_parser_reads_the_head_as_written() -> None:
    head = request_head(
        "PUT", "/a%20b", HOST, [(b"idempotency-key", b"k-1"), (b"x", b"")], CHUNKED_LINE
    )
    server = h11.Connection(h11.SERVER)
    server.receive_data(head + b"3\r\nabc\r\n" + LAST_CHUNK)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert (request.method, request.target) == (b"PUT", b"/a%20b")
    assert list(request.headers) == [
        (b"host", HOST),
        (b"idempotency-key", b"k-1"),
        (b"x", b""),
        (b"transfer-encoding", b"chunked"),
    ]
    data = server.next_event()
    assert isinstance(data, h11.Data) and data.data == b"abc"
    assert isinstance(server.next_event(), h11.EndOfMessage)


@pytest.mark.parametrize(
    "value",
    [b"a\r\nx-injected: 1", b"a\rb", b"a\nb", b"a\x00b", b"a\x7fb", b"a\x01b"],
    ids=["crlf", "cr", "lf", "nul", "del", "control"],
)
def test_a_value_that_could_split_the_head_is_refused(value: bytes) -> None:
    with pytest.raises(AppChannelError, match="control character"):
        request_head("GET", "/", HOST, [(b"x-a", value)], b"")


@pytest.mark.parametrize("name", [b"", b"x a", b"x:y", b"x\r\ny", b"x\x00"])
def test_a_name_that_is_not_a_token_is_refused(name: bytes) -> None:
    with pytest.raises(AppChannelError):
        request_head("GET", "/", HOST, [(b"ok", b"1"), (name, b"v")], b"")


@pytest.mark.parametrize(
    ("verb", "target"),
    [
        ("GET", "/a b"),
        ("GET", "/a\r\nb"),
        ("GET", ""),
        ("GE T", "/"),
        ("", "/"),
        ("GET", "/\u20ac"),  # beyond latin-1
    ],
)
def test_a_request_line_that_cannot_be_written_is_refused(verb: str, target: str) -> None:
    with pytest.raises(AppChannelError):
        request_head(verb, target, HOST, [], b"")


def test_obs_text_in_a_value_passes_through() -> None:
    head = request_head("GET", "/", HOST, [(b"x-name", "café".encode("latin-1"))], b"")
    assert b"x-name: caf\xe9\r\n" in head


def test_content_length_line() -> None:
    assert content_length_line(0) == b"content-length: 0\r\n"


@pytest.mark.parametrize(
    ("status", "head_request", "headers", "expected"),
    [
        (200, False, [(b"content-length", b"12")], (LENGTH, 12, True)),
        (200, False, [(b"transfer-encoding", b"chunked")], (CHUNKED, None, True)),
        (200, False, [(b"transfer-encoding", b" Chunked ")], (CHUNKED, None, True)),
        (200, False, [], (UNTIL_CLOSE, None, False)),
        (200, False, [(b"content-type", b"text/plain")], (UNTIL_CLOSE, None, False)),
        (204, False, [], (NO_BODY, None, True)),
        (304, False, [(b"content-length", b"40")], (NO_BODY, 40, True)),
        (200, True, [(b"content-length", b"40")], (NO_BODY, 40, True)),
        (200, True, [], (NO_BODY, None, True)),
        (200, True, [(b"transfer-encoding", b"gzip")], (NO_BODY, None, True)),
        (404, False, [(b"content-length", b"0")], (LENGTH, 0, True)),
    ],
    ids=[
        "length",
        "chunked",
        "chunked_any_case",
        "until_close",
        "until_close_with_fields",
        "204",
        "304_keeps_its_declared_length",
        "head_keeps_its_declared_length",
        "head_without_length",
        "head_ignores_codings",
        "empty_404",
    ],
)
def test_how_the_body_ends(
    status: int,
    head_request: bool,
    headers: list[tuple[bytes, bytes]],
    expected: tuple[int, int | None, bool],
) -> None:
    assert response_framing(status, "1.1", head_request, headers) == expected


@pytest.mark.parametrize(
    "codings", [[b"gzip"], [b"chunked, gzip"], [b"gzip, chunked"], [b"chunked", b"chunked"]]
)
def test_a_transfer_encoding_other_than_chunked_alone_is_refused(codings: list[bytes]) -> None:
    headers = [(b"transfer-encoding", coding) for coding in codings]
    with pytest.raises(AppProtocolError, match="Transfer-Encoding"):
        response_framing(200, "1.1", False, headers)


@pytest.mark.parametrize(
    ("version", "connection", "reusable"),
    [
        ("1.1", [], True),
        ("1.1", [b"close"], False),
        ("1.1", [b"Keep-Alive, CLOSE"], False),
        ("1.1", [b"keep-alive", b"close"], False),
        ("1.1", [b"upgrade"], True),
        ("1.0", [], False),
        ("1.0", [b"keep-alive"], True),
        ("1.0", [b"Keep-Alive"], True),
        ("1.0", [b"keep-alive, close"], False),
        ("0.9", [], False),
    ],
)
def test_when_the_connection_carries_another_request(
    version: str, connection: list[bytes], reusable: bool
) -> None:
    headers = [(b"content-length", b"2"), *((b"connection", value) for value in connection)]
    assert response_framing(200, version, False, headers)[2] is reusable


def test_a_close_delimited_body_never_leaves_the_connection_reusable() -> None:
    assert response_framing(200, "1.1", False, [(b"connection", b"keep-alive")])[2] is False


def test_transfer_encoding_on_http_1_0_is_read_but_the_connection_not_reused() -> None:
    headers = [(b"transfer-encoding", b"chunked"), (b"connection", b"keep-alive")]
    assert response_framing(200, "1.0", False, headers) == (CHUNKED, None, False)


def test_the_first_content_length_is_the_declared_one() -> None:
    # llhttp refuses differing duplicates before this is asked.
    assert response_framing(200, "1.1", False, [(b"content-length", b"5")])[1] == 5
