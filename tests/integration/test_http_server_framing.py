"""The HTTP/1.1 server's message framing on real loopback sockets: requests split byte
by byte or pipelined with bodies, HEAD, HTTP/1.0 keep-alive and close, chunked and
close-delimited answers, Expect: 100-continue, and answers that are not valid HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.core.body import Body
from proxy.edge.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer

HOST = "127.0.0.1"
# Upper bound for any single wait; never asserted as a duration.
WAIT = 10.0


async def _echo(request: HttpRequest) -> HttpResponse:
    body = await request.body.read_all(1 << 20)
    headers = [(b"x-verb", request.verb.encode()), (b"x-target", request.target.encode())]
    return HttpResponse(200, headers, Body(body))


def _serve(
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]],
    scenario: Callable[[int], bytes],
    limits: HttpLimits | None = None,
) -> bytes:
    """Run ``scenario`` (blocking socket code, in a thread) against a server."""

    async def main() -> bytes:
        server = HttpServer(handler, limits or HttpLimits(replay_buffer_size=1024))
        await server.listen([HOST], 0)
        try:
            return await asyncio.wait_for(asyncio.to_thread(scenario, server.port), 60)
        finally:
            await server.stop(1.0)

    return asyncio.run(main())


def _talk(data: bytes, byte_by_byte: bool = False) -> Callable[[int], bytes]:
    """Send ``data``, half-close, read everything until the server closes."""

    def scenario(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=WAIT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if byte_by_byte:
                for index in range(len(data)):
                    sock.sendall(data[index : index + 1])
            else:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    return scenario


def _answers(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Split Content-Length framed answers: (status line, headers, body) each."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
        length = int(headers.get(b"content-length", b"0"))
        out.append((status, headers, data[:length]))
        data = data[length:]
    return out


PIPELINED = (
    b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
    b"PUT /2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"
    b"GET /3 HTTP/1.1\r\nHost: t\r\n\r\n"
    b"POST /4 HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n" + b"z" * 2000
)


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_pipelined_requests_with_bodies_whole_or_byte_by_byte(byte_by_byte: bool) -> None:
    answers = _answers(_serve(_echo, _talk(PIPELINED, byte_by_byte)))
    assert [(a[1][b"x-target"], a[2]) for a in answers] == [
        (b"/1", b"abc"),
        (b"/2", b"def"),
        (b"/3", b""),
        (b"/4", b"z" * 2000),  # over the replay buffer: streamed to the handler
    ]
    assert all(a[0] == b"HTTP/1.1 200 OK" for a in answers)


def test_head_gets_the_head_only_and_the_connection_stays_usable() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [(b"content-type", b"text/plain")], Body(b"ignored body"))

    data = _serve(
        handler,
        _talk(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ") and b"content-length: 12" in first
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\nignored body")


def test_http10_keeps_alive_only_when_asked() -> None:
    two = (
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n"
    )
    answers = _answers(_serve(_echo, _talk(two)))
    assert [a[1][b"x-target"] for a in answers] == [b"/a", b"/b"]  # closed after /b
    assert answers[0][1][b"connection"] == b"keep-alive"
    assert answers[1][1][b"connection"] == b"close"


def test_client_connection_close_ends_after_the_answer() -> None:
    raw = (
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    answers = _answers(_serve(_echo, _talk(raw)))
    assert [a[1][b"x-target"] for a in answers] == [b"/a"]
    assert answers[0][1][b"connection"] == b"close"


async def _stream(request: HttpRequest) -> HttpResponse:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    return HttpResponse(200, [(b"content-type", b"text/plain")], Body(b"", pieces()))


def test_streamed_answer_is_chunked_to_http11_and_close_delimited_to_http10() -> None:
    chunked = _serve(_stream, _talk(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    head, _, body = chunked.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    plain = _serve(_stream, _talk(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
    head, _, body = plain.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert body == b"hello world"


def test_a_split_response_header_is_answered_502() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        evil = [(b"x-a", b"a\r\nSet-Cookie: stolen=1")]
        return HttpResponse(200, evil, Body(b"x"))

    data = _serve(handler, _talk(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 502 ") and b"stolen" not in data.split(b"\r\n\r\n")[0]


def test_a_streamed_answer_shorter_than_its_length_closes_the_connection() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        async def pieces() -> AsyncIterator[bytes]:
            yield b"abc"

        return HttpResponse(200, [(b"content-length", b"10")], Body(b"", pieces()))

    data = _serve(
        handler, _talk(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    )
    assert data.count(b"HTTP/1.1 ") == 1 and data.endswith(b"\r\n\r\nabc")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ],
)
def test_what_the_server_does_not_implement(raw: bytes, status: int) -> None:
    for byte_by_byte in (False, True):
        data = _serve(_echo, _talk(raw, byte_by_byte))
        assert data.startswith(b"HTTP/1.1 %d " % status), data[:100]


def test_expect_100_continue_on_a_streamed_body() -> None:
    def scenario(port: int) -> bytes:
        with socket.create_connection((HOST, port), timeout=WAIT) as sock:
            sock.sendall(
                b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                b"Content-Length: 4000\r\n\r\n"
            )
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                interim += sock.recv(1)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"q" * 4000)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    answers = _answers(_serve(_echo, scenario))
    assert answers[0][2] == b"q" * 4000


def test_upgrade_is_not_honoured_and_the_body_reaches_the_handler() -> None:
    raw = (
        b"POST /u HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    answers = _answers(_serve(_echo, _talk(raw)))
    assert [(a[0], a[1][b"x-target"], a[2]) for a in answers] == [
        (b"HTTP/1.1 200 OK", b"/u", b"hello"),
        (b"HTTP/1.1 200 OK", b"/after", b""),
    ]
