"""The HTTP edge under arbitrary bytes, fed whole and byte by byte (as h11's own fuzzing
does): every input is answered with HTTP or the connection is closed, nothing raises
inside the server, and the server keeps serving. A real HttpServer on loopback, run on
its own event loop thread; the client half-closes after sending, so the server must
decide on what it has."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core.body import Body
from proxy.edge.body_pace import BodyPacePolicy
from proxy.edge.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer
from tests.fuzz.served import Running as Server
from tests.fuzz.served import served


async def _echo(request: HttpRequest) -> HttpResponse:
    body = request.body.head
    if not request.body.complete:
        async for chunk in request.body.chunks():
            body += chunk
    return HttpResponse(200, [(b"x-verb", request.verb.encode())], Body(body))


async def _start() -> tuple[int, Callable[[], Awaitable[None]]]:
    limits = HttpLimits(
        max_header_bytes=4096,
        max_body_size=64 * 1024,
        replay_buffer_size=1024,
        header_timeout=5.0,
        linger_time=0.2,
        body_pace=BodyPacePolicy(idle_timeout=5.0),
    )
    server = HttpServer(_echo, limits)
    await server.listen(["127.0.0.1"], 0)
    return server.port, lambda: server.stop(0)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """An echo HttpServer; ``errors`` collects what tether logged at ERROR."""
    with served(_start) as running:
        yield running


def exchange(port: int, data: bytes, byte_by_byte: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if byte_by_byte:
                for index in range(len(data)):
                    sock.send(data[index : index + 1])
            else:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered early and closed: read what it said
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"G\x00T", b"", b"POST "])
TARGETS = st.sampled_from([b"/", b"/v1.0/invoke/a/method/b", b"*", b"http://x/y", b"/%zz", b""])
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""])
HEADER_NAMES = st.sampled_from(
    [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"X-A", b"",
     b"Bad Name", b"content-length"]
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.sampled_from([b"x", b"5", b"-1", b"chunked", b"gzip, chunked", b"close", b"100-continue",
                     b"99999999999999999999", b" 3 ", b"a\x01b", b""]),
    st.binary(max_size=12),
)  # fmt: skip
LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n "])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Mostly HTTP-shaped requests with parts gone wrong, sometimes two pipelined."""
    out = b""
    for _ in range(draw(st.integers(1, 2))):
        end = draw(LINE_ENDS) if draw(st.integers(0, 4)) == 0 else b"\r\n"
        out += draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS) + end
        for _ in range(draw(st.integers(0, 4))):
            out += draw(HEADER_NAMES) + b": " + draw(HEADER_VALUES) + end
        out += end + draw(st.binary(max_size=40))
    return out


INPUTS = st.one_of(requests(), st.binary(max_size=200))


def check(server: Server, reply: bytes) -> None:
    assert reply == b"" or reply.startswith(b"HTTP/1.1 "), reply[:200]
    for line in reply.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            status = int(line[9:12])
            assert 100 <= status <= 599 and status != 500, line
    assert server.errors == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(INPUTS)
def test_any_bytes_sent_whole_are_answered_or_closed(server: Server, data: bytes) -> None:
    check(server, exchange(server.port, data, byte_by_byte=False))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(INPUTS)
def test_any_bytes_fed_byte_by_byte_are_answered_the_same_way(server: Server, data: bytes) -> None:
    whole = exchange(server.port, data, byte_by_byte=False)
    piecewise = exchange(server.port, data, byte_by_byte=True)
    check(server, piecewise)
    # The same decision, whatever the reads looked like.
    assert whole.split(b"\r\n", 1)[0] == piecewise.split(b"\r\n", 1)[0]


def test_the_server_still_serves_after_the_fuzzing(server: Server) -> None:
    reply = exchange(
        server.port, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", False
    )
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"hi")
