"""The HTTP/1.1 API server on real loopback sockets, driven by raw asyncio clients.

Each test starts one ``HttpServer`` with a small fake handler inside
``asyncio.run`` and stops it (and closes every client socket) in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from proxy.core.body import Body
from proxy.edge.http_server import (
    HttpLimits,
    HttpRequest,
    HttpResponse,
    HttpServer,
    PlainError,
    Reject,
    plain_reject,
)
from tests.e2e.harness import free_port

HOST = "127.0.0.1"
# Upper bound for any single wait on the server; never asserted as a duration.
WAIT = 5.0


@dataclass
class Recorder:
    """A fake handler: records each request and answers 200 with ``VERB target``."""

    requests: list[tuple[str, str, dict[bytes, bytes], bytes]] = field(default_factory=list)
    read_body: bool = True

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        body = await request.body.read_all(16 * 1024 * 1024) if self.read_body else b""
        self.requests.append((request.verb, request.target, dict(request.headers), body))
        answer = f"{request.verb} {request.target} {len(body)}".encode()
        return HttpResponse(200, [(b"content-type", b"text/plain")], Body(answer))


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    lines = head[:-4].split(b"\r\n")
    version, status, *_ = lines[0].split(b" ", 2)
    assert version == b"HTTP/1.1", lines[0]
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    """Read one final response framed by Content-Length (all this server's handlers)."""
    status, headers = await _read_head(reader)
    length = int(headers[b"content-length"])
    body = await asyncio.wait_for(reader.readexactly(length), WAIT)
    return Reply(status, headers, body)


async def _with_server(
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]],
    limits: HttpLimits,
    scenario: Callable[[HttpServer, int], Awaitable[None]],
    reject: Reject = plain_reject,
) -> None:
    server = HttpServer(handler, limits, reject=reject)
    port = free_port()
    await server.listen([HOST], port)
    try:
        await scenario(server, port)
    finally:
        await server.stop(1.0)


@contextlib.asynccontextmanager
async def _connect(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), WAIT)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def test_slow_request_head_is_closed_without_calling_the_handler() -> None:
    handler = Recorder()

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            writer.write(b"GET /slow HTTP/1.1\r\nHost: te")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), WAIT)
            assert data == b""
            assert reader.at_eof()
        assert handler.requests == []

    asyncio.run(_with_server(handler, HttpLimits(header_timeout=0.3), scenario))


def test_expect_100_continue_before_the_body() -> None:
    handler = Recorder()
    payload = b'{"order":"book","count":3}'

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            writer.write(
                b"POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(payload)
            )
            await writer.drain()
            # The interim answer comes while the body is still withheld.
            status, _ = await _read_head(reader)
            assert status == 100
            assert handler.requests == []
            writer.write(payload)
            await writer.drain()
            reply = await _read_reply(reader)
            assert reply.status == 200
            assert reply.body == f"POST /orders {len(payload)}".encode()
        assert len(handler.requests) == 1
        verb, target, headers, body = handler.requests[0]
        assert (verb, target, body) == ("POST", "/orders", payload)
        assert headers[b"expect"].lower() == b"100-continue"

    asyncio.run(_with_server(handler, HttpLimits(), scenario))


def test_keep_alive_serves_sequential_requests_on_one_connection() -> None:
    handler = Recorder()

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            for index in range(3):
                writer.write(_get(f"/item/{index}"))
                await writer.drain()
                reply = await _read_reply(reader)
                assert reply.status == 200
                assert reply.body == f"GET /item/{index} 0".encode()
                assert reply.headers.get(b"connection", b"").lower() != b"close"
        assert [target for _, target, _, _ in handler.requests] == [
            "/item/0",
            "/item/1",
            "/item/2",
        ]

    asyncio.run(_with_server(handler, HttpLimits(), scenario))


def test_pipelined_requests_are_answered_in_order() -> None:
    handler = Recorder()

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            second = b"POST /second HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
            writer.write(_get("/first") + second)
            await writer.drain()
            first_reply = await _read_reply(reader)
            second_reply = await _read_reply(reader)
        assert (first_reply.status, first_reply.body) == (200, b"GET /first 0")
        assert (second_reply.status, second_reply.body) == (200, b"POST /second 5")
        assert [(v, t, b) for v, t, _, b in handler.requests] == [
            ("GET", "/first", b""),
            ("POST", "/second", b"hello"),
        ]

    asyncio.run(_with_server(handler, HttpLimits(), scenario))


@pytest.mark.parametrize("replay_buffer_size", [HttpLimits().replay_buffer_size, 16 * 1024])
def test_chunked_body_streams_to_the_handler_intact(replay_buffer_size: int) -> None:
    seen: list[tuple[bool, bytes]] = []

    async def streaming_handler(request: HttpRequest) -> HttpResponse:
        complete = request.body.complete
        parts = [chunk async for chunk in request.body.chunks()]
        body = b"".join(parts)
        seen.append((complete, body))
        digest = hashlib.sha256(body).hexdigest()
        answer = json.dumps({"length": len(body), "sha256": digest, "pieces": len(parts)})
        return HttpResponse(200, [(b"content-type", b"application/json")], Body(answer.encode()))

    # Several chunks of uneven sizes, ~300 KB in all: more than one 64 KiB read.
    sizes = [1, 70_000, 4_095, 100_000, 65_536, 60_372]
    chunks = [os.urandom(size) for size in sizes]
    payload = b"".join(chunks)

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            writer.write(
                b"PUT /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for chunk in chunks:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            reply = await _read_reply(reader)
        assert reply.status == 200
        answer = json.loads(reply.body)
        assert answer["length"] == len(payload) == sum(sizes)
        assert answer["sha256"] == hashlib.sha256(payload).hexdigest()
        assert len(seen) == 1
        complete, body = seen[0]
        assert body == payload
        if replay_buffer_size < len(payload):
            assert not complete  # more than the replay buffer: streamed, not held whole

    limits = HttpLimits(replay_buffer_size=replay_buffer_size)
    asyncio.run(_with_server(streaming_handler, limits, scenario))


def test_chunked_body_read_all_in_handler() -> None:
    handler = Recorder()
    payload = os.urandom(300_000)

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            writer.write(b"POST /all HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(payload), 50_000):
                piece = payload[start : start + 50_000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            reply = await _read_reply(reader)
            assert reply.status == 200
            assert reply.body == f"POST /all {len(payload)}".encode()
            # The body was consumed fully, so the connection stays usable.
            writer.write(_get("/after"))
            await writer.drain()
            assert (await _read_reply(reader)).body == b"GET /after 0"
        assert handler.requests[0][3] == payload

    asyncio.run(_with_server(handler, HttpLimits(), scenario))


def test_a_bound_server_holds_its_port_but_accepts_only_once_serving() -> None:
    async def main() -> None:
        server = HttpServer(Recorder(), HttpLimits())
        port = free_port()
        await server.listen([HOST], port, serve=False)
        try:
            with socket.socket() as other, pytest.raises(OSError):
                other.bind((HOST, port))  # taken: a second sidecar fails at its start
            with socket.socket() as probe:
                assert probe.connect_ex((HOST, port)) != 0  # nobody accepts yet
            await server.serve()
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), WAIT)).startswith(b"HTTP/1.1 200")
            writer.close()
        finally:
            await server.stop(0)

    asyncio.run(main())


def test_stop_waits_for_the_request_in_flight() -> None:
    async def main() -> None:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def slow_handler(request: HttpRequest) -> HttpResponse:
            entered.set()
            await release.wait()
            return HttpResponse(200, [(b"content-type", b"text/plain")], Body(b"finished"))

        server = HttpServer(slow_handler, HttpLimits())
        port = free_port()
        await server.listen([HOST], port)
        stopper: asyncio.Task[None] | None = None
        try:
            async with _connect(port) as (reader, writer):
                writer.write(_get("/slow"))
                await writer.drain()
                await asyncio.wait_for(entered.wait(), WAIT)
                stopper = asyncio.create_task(server.stop(30.0))
                # Let stop() run up to its wait for the idle server.
                for _ in range(20):
                    await asyncio.sleep(0.01)
                assert not stopper.done(), "stop() returned with a request in flight"
                release.set()
                reply = await _read_reply(reader)
                assert (reply.status, reply.body) == (200, b"finished")
                await asyncio.wait_for(stopper, WAIT)
            # Stopped: nothing listens any more.
            try:
                _, late = await asyncio.wait_for(asyncio.open_connection(HOST, port), WAIT)
            except OSError:
                pass
            else:
                late.close()
                raise AssertionError("the server still accepts connections after stop()")
        finally:
            release.set()
            if stopper is None:
                await server.stop(1.0)
            elif not stopper.done():
                await asyncio.wait_for(stopper, WAIT)

    asyncio.run(main())


def test_handler_exception_becomes_a_500_worded_by_the_given_reject() -> None:
    calls: list[str] = []
    reasons: list[tuple[int, str]] = []

    def reject(status: int, reason: str) -> PlainError:
        reasons.append((status, reason))
        return PlainError(status, b'{"problem":"%d"}' % status, b"application/json")

    async def broken_handler(request: HttpRequest) -> HttpResponse:
        calls.append(request.target)
        if request.target == "/boom":
            raise RuntimeError("unexpected failure in the handler")
        return HttpResponse(200, [(b"content-type", b"text/plain")], Body(b"fine"))

    async def scenario(server: HttpServer, port: int) -> None:
        async with _connect(port) as (reader, writer):
            writer.write(_get("/boom"))
            await writer.drain()
            reply = await _read_reply(reader)
            assert reply.status == 500
            assert reply.headers[b"content-type"] == b"application/json"
            assert json.loads(reply.body) == {"problem": "500"}
            assert reasons == [(500, "internal error")]  # no internals leaked
            # The connection survived the failure.
            writer.write(_get("/ok"))
            await writer.drain()
            assert (await _read_reply(reader)).body == b"fine"
        assert calls == ["/boom", "/ok"]

    asyncio.run(_with_server(broken_handler, HttpLimits(), scenario, reject))


def _send_all_then_read(port: int, raw: bytes) -> bytes:
    """As a plain client does: send the whole request, then read the answer to EOF.

    A reset anywhere (while sending or reading) raises ``ConnectionResetError`` or
    ``BrokenPipeError``; that is the failure the lingering close prevents.
    """
    with socket.create_connection((HOST, port), timeout=WAIT) as sock:
        sock.sendall(raw)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def _assert_whole_answer(reply: bytes, status: int) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head[:100]
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    assert len(body) == length


HEADERS_200K = (
    b"GET /big HTTP/1.1\r\nHost: test\r\n"
    + b"".join(b"X-Fill-%d: %s\r\n" % (i, b"a" * 1000) for i in range(200))
    + b"\r\n"
)
BODY_1M = b"x" * (1 << 20)
EARLY_REJECTIONS = {
    "head_over_read_buffer_431": (HEADERS_200K, 431),
    "body_over_limit_413": (
        b"POST /big HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(BODY_1M) + BODY_1M,
        413,
    ),
    "request_line_over_limit_414": (
        b"GET /" + b"p" * 200_000 + b" HTTP/1.1\r\nHost: test\r\n\r\n",
        414,
    ),
    "length_and_chunked_400": (
        b"POST /big HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % len(BODY_1M) + BODY_1M,
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(EARLY_REJECTIONS))
def test_early_error_answer_is_read_whole_not_reset(case: str) -> None:
    raw, status = EARLY_REJECTIONS[case]
    handler = Recorder()

    async def scenario(server: HttpServer, port: int) -> None:
        # A reset depends on timing (how much of the request is unread when the
        # server closes), so try several times; every one must read the answer.
        for _ in range(8):
            reply = await asyncio.to_thread(_send_all_then_read, port, raw)
            _assert_whole_answer(reply, status)
        assert handler.requests == []

    limits = HttpLimits(max_header_bytes=4 * 1024, max_body_size=1024)
    asyncio.run(_with_server(handler, limits, scenario))
