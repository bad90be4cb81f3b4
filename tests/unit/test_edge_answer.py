"""The server's response heads and body framing, pure: Content-Length for whole bodies,
chunked or close-delimited for streamed ones, nothing for HEAD/204/304, the keep-alive
decision, and responses that are not valid HTTP (502 at the edge)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.core.body import Body
from proxy.core.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE
from proxy.edge.http_answer import InvalidResponse, answer_head, error_answer
from proxy.edge.http_messages import REASONS, HttpResponse, PlainError

CT = (b"content-type", b"text/plain")


async def _rest() -> AsyncIterator[bytes]:
    yield b"more"


def streamed(*headers: tuple[bytes, bytes], status: int = 200) -> HttpResponse:
    return HttpResponse(status, list(headers), Body(b"", _rest()))


def whole(data: bytes, *headers: tuple[bytes, bytes], status: int = 200) -> HttpResponse:
    return HttpResponse(status, list(headers), Body(data))


def lines(head: bytes) -> list[bytes]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def test_whole_body_gets_its_length() -> None:
    answer = answer_head(whole(b"hello", CT), False, False, True)
    assert lines(answer.head) == [
        b"HTTP/1.1 200 OK",
        b"content-type: text/plain",
        b"content-length: 5",
    ]
    assert (answer.framing, answer.length, answer.keep_alive) == (LENGTH, 5, True)


def test_handler_framing_headers_are_replaced() -> None:
    response = whole(
        b"hi", (b"Content-Length", b"2"), (b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"5")
    )
    assert lines(answer_head(response, False, False, True).head) == [
        b"HTTP/1.1 200 OK",
        b"content-length: 2",
    ]


def test_streamed_body_is_chunked_for_http11_and_close_delimited_for_http10() -> None:
    chunked = answer_head(streamed(CT), False, False, True)
    assert b"transfer-encoding: chunked" in lines(chunked.head)
    assert (chunked.framing, chunked.keep_alive) == (CHUNKED, True)
    closing = answer_head(streamed(CT), False, True, True)
    assert b"transfer-encoding: chunked" not in lines(closing.head)
    assert b"connection: close" in lines(closing.head)
    assert (closing.framing, closing.keep_alive) == (UNTIL_CLOSE, False)


def test_streamed_body_with_a_declared_length_keeps_it() -> None:
    answer = answer_head(streamed((b"content-length", b"4")), False, False, True)
    assert (answer.framing, answer.length) == (LENGTH, 4)
    assert b"content-length: 4" in lines(answer.head)


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    answer = answer_head(whole(b"", status=status), False, False, True)
    assert answer.framing == NO_BODY
    assert not any(line.startswith(b"content-length") for line in lines(answer.head))


def test_head_request_gets_no_body_but_the_length() -> None:
    answer = answer_head(whole(b"", (b"content-length", b"1234")), True, False, True)
    assert answer.framing == NO_BODY
    assert b"content-length: 1234" in lines(answer.head)
    streamed_head = answer_head(streamed(), True, False, True)
    assert streamed_head.framing == NO_BODY
    assert b"transfer-encoding: chunked" not in lines(streamed_head.head)


def test_keep_alive_decision() -> None:
    assert b"connection: close" in lines(answer_head(whole(b""), False, False, False).head)
    said_close = answer_head(whole(b"", (b"Connection", b"Close")), False, False, True)
    assert not said_close.keep_alive and b"connection: close" in lines(said_close.head)
    http10 = answer_head(whole(b"x"), False, True, True)
    assert http10.keep_alive and b"connection: keep-alive" in lines(http10.head)
    assert not any(
        b"connection" in line for line in lines(answer_head(whole(b""), False, False, True).head)
    )


def test_unknown_status_has_an_empty_reason() -> None:
    assert answer_head(whole(b""), False, False, True).head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer_head(whole(b"", status=599), False, False, True).head.startswith(
        b"HTTP/1.1 599 \r\n"
    )


@pytest.mark.parametrize(
    "response",
    [
        whole(b"", (b"x-a", b"a\r\nSet-Cookie: evil")),  # response splitting
        whole(b"", (b"x-a", b"a\nb")),
        whole(b"", (b"x-a", b"a\x00b")),
        whole(b"", (b"x-a", b"a\x7f")),
        whole(b"", (b"bad name", b"a")),
        whole(b"", (b"", b"a")),
        whole(b"", (b"x:y", b"a")),
        whole(b"", status=101),
        whole(b"", status=1000),
        whole(b"abc", (b"content-length", b"4")),
        whole(b"", (b"content-length", b"-1")),
        streamed((b"content-length", b"1"), (b"content-length", b"2")),
    ],
)
def test_invalid_responses_are_refused(response: HttpResponse) -> None:
    with pytest.raises(InvalidResponse):
        answer_head(response, False, False, True)


def test_tab_and_high_bytes_stay_allowed_in_values() -> None:
    answer = answer_head(whole(b"", (b"x-a", b"a\tb \x80\xff")), False, False, True)
    assert b"x-a: a\tb \x80\xff" in lines(answer.head)


def test_error_answer_closes_and_omits_the_body_for_head() -> None:
    error = PlainError(413, b"too big")
    data = error_answer(error, False)
    head, _, body = data.partition(b"\r\n\r\n")
    assert lines(head + b"\r\n\r\n") == [
        b"HTTP/1.1 413 " + REASONS[413],
        b"content-type: text/plain; charset=utf-8",
        b"content-length: 7",
        b"connection: close",
    ]
    assert body == b"too big"
    assert error_answer(error, True) == head + b"\r\n\r\n"
