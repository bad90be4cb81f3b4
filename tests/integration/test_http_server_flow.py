"""Flow control and ordering of the HTTP/1.1 server on real loopback sockets: a slow
reader holds the producer of a streamed answer (not the server's memory), a handler
that does not read its streamed body leaves the rest in the kernel, pipelined
requests are answered one by one in order, and an idle keep-alive connection closes
after the header timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import h11

from proxy.core.body import Body
from proxy.edge.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer
from tests.e2e.harness import free_port

HOST = "127.0.0.1"
# Upper bound for any single wait; never asserted as a duration.
WAIT = 10.0
MiB = 1024 * 1024
PIECE = b"x" * (64 * 1024)


async def _with_server(
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]],
    limits: HttpLimits,
    scenario: Callable[[int], Awaitable[None]],
) -> None:
    server = HttpServer(handler, limits)
    port = free_port()
    await server.listen([HOST], port)
    try:
        await asyncio.wait_for(scenario(port), 60)
    finally:
        await server.stop(1.0)


async def _until_stable(read: Callable[[], int]) -> int:
    """Wait until a counter stops moving (the pipe is full), bounded by WAIT."""
    last, still = -1, 0
    async with asyncio.timeout(WAIT):
        while still < 10:
            await asyncio.sleep(0.02)
            now = read()
            still = still + 1 if now == last else 0
            last = now
    return last


class _Responses:
    """Reads the answers of one connection in turn (h11's client state machine is
    told of a request per answer, so pipelined answers parse one after another)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._conn = h11.Connection(h11.CLIENT)

    async def next(self) -> tuple[int, bytes]:
        conn = self._conn
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        conn.send(h11.Request(method="GET", target="/", headers=[(b"host", b"test")]))
        conn.send(h11.EndOfMessage())
        status, body = 0, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(self._reader.read(256 * 1024), WAIT))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
            else:
                raise AssertionError(f"unexpected {event!r}")


def test_slow_reader_holds_the_streamed_answer_not_server_memory() -> None:
    total = 32 * MiB
    produced = 0

    async def handler(request: HttpRequest) -> HttpResponse:
        async def pieces() -> AsyncIterator[bytes]:
            nonlocal produced
            for _ in range(total // len(PIECE)):
                produced += len(PIECE)
                yield PIECE

        return HttpResponse(
            200, [(b"content-type", b"application/octet-stream")], Body(b"", pieces())
        )

    async def scenario(port: int) -> None:
        sock = socket.socket()
        # A small receive window, so what the kernel absorbs stays far below the body.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
            await writer.drain()
            stalled_at = await _until_stable(lambda: produced)
            # Without write flow control the handler would have produced it all.
            assert stalled_at < total // 2, stalled_at
            status, body = await _Responses(reader).next()
            assert status == 200
            assert len(body) == total
            assert produced == total
        finally:
            writer.close()

    asyncio.run(_with_server(handler, HttpLimits(), scenario))


def test_unread_streamed_body_stays_in_the_kernel_until_the_handler_asks() -> None:
    total = 160 * MiB
    release = asyncio.Event()

    async def handler(request: HttpRequest) -> HttpResponse:
        await release.wait()
        received = len(await request.body.read_all(total))
        return HttpResponse(200, [(b"content-type", b"text/plain")], Body(b"%d" % received))

    def send_until_stalled(sock: socket.socket) -> int:
        """Send (non-blocking) until the kernel takes nothing more for a while."""
        sent, idle = 0, 0
        head = b"POST /up HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % total
        sock.sendall(head)
        sock.setblocking(False)
        view = memoryview(b"y" * MiB)
        while sent < total and idle < 50:
            try:
                sent += sock.send(view[: min(len(view), total - sent)])
                idle = 0
            except BlockingIOError:
                idle += 1
                time.sleep(0.01)
        sock.setblocking(True)
        return sent

    async def scenario(port: int) -> None:
        sock = await asyncio.to_thread(socket.create_connection, (HOST, port), WAIT)
        with contextlib.closing(sock):
            accepted = await asyncio.to_thread(send_until_stalled, sock)
            # Socket buffers hold some tens of MiB at most; the server reads no further.
            assert accepted < 96 * MiB, accepted
            release.set()
            rest = b"y" * (total - accepted)
            await asyncio.to_thread(sock.sendall, rest)
            sock.settimeout(WAIT)
            reply = await asyncio.to_thread(sock.recv, 65536)
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:80]
        assert reply.endswith(b"\r\n\r\n%d" % total), reply[-80:]

    limits = HttpLimits(max_body_size=total, replay_buffer_size=64 * 1024)
    asyncio.run(_with_server(handler, limits, scenario))


def test_many_pipelined_requests_are_handled_one_at_a_time_in_order() -> None:
    order: list[str] = []
    running = 0
    most = 0

    async def handler(request: HttpRequest) -> HttpResponse:
        nonlocal running, most
        running += 1
        most = max(most, running)
        body = await request.body.read_all(MiB)
        if request.target == "/0":
            await asyncio.sleep(0.05)  # the rest queue up behind the first
        order.append(request.target)
        running -= 1
        answer = b"%s %d" % (request.target.encode(), len(body))
        return HttpResponse(200, [(b"content-type", b"text/plain")], Body(answer))

    requests = []
    for index in range(12):
        if index % 3 == 0:
            requests.append(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % index)
        elif index % 3 == 1:
            requests.append(b"POST /%d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" % index)
        else:
            requests.append(
                b"POST /%d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4\r\nwxyz\r\n0\r\n\r\n" % index
            )

    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(b"".join(requests))
            await writer.drain()
            responses = _Responses(reader)
            for index in range(12):
                status, body = await responses.next()
                length = (0, 3, 4)[index % 3]
                assert (status, body) == (200, b"/%d %d" % (index, length))
        finally:
            writer.close()

    asyncio.run(_with_server(handler, HttpLimits(), scenario))
    assert order == [f"/{index}" for index in range(12)]
    assert most == 1


def test_idle_keep_alive_connection_closes_after_the_header_timeout() -> None:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [(b"content-type", b"text/plain")], Body(b"ok"))

    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            responses = _Responses(reader)
            for _ in range(3):
                writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                await writer.drain()
                assert await responses.next() == (200, b"ok")
            # Then nothing: the server closes the idle connection without a word.
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()

    asyncio.run(_with_server(handler, HttpLimits(header_timeout=0.3), scenario))
