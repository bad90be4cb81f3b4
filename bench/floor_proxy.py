"""The Python floor: the thinnest proxy pair CPython can make of tether's hop.

``python -m bench.floor_proxy caller|callee ...`` is one side of a pair built from
the same parts tether runs on (uvloop, ``ssl`` with client certificates, llhttp
through ``httptools``) and nothing else: no HTTP/2, no protobuf, no routing, header
rules, resiliency, metrics or tasks. All work happens in protocol callbacks.

* caller: an HTTP/1.1 server for the load; each request goes as one frame over a
  single mTLS connection to the callee and its answer comes back the same way;
* callee: serves that connection and sends each request to the app over a pool of
  keep-alive HTTP/1.1 connections.

Frames are ``length (4 bytes) | id (4 bytes) | payload``; a request's payload is
``METHOD SP PATH LF BODY``, an answer's ``STATUS (3 digits) BODY``. What this pair
costs per request is what any Python proxy of this design pays before it does what a
sidecar must do; ``bench.invoke_bench`` measures it beside tether and nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import struct
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import httptools
import uvloop

from bench.nginx_pair import CertPaths
from bench.procs import Proc, start, wait_listening

HEADER = struct.Struct("!II")
REASONS = {200: b"OK", 400: b"Bad Request", 502: b"Bad Gateway"}
MAX_FRAME = 64 * 1024 * 1024
Answer = Callable[[int, int, bytes], None]  # (frame id, HTTP status, body)


def http_response(status: int, body: bytes) -> bytes:
    reason = REASONS.get(status, b"Status")
    head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n" % (status, reason, len(body))
    return head + body


class FrameReader:
    """Splits a byte stream into (id, payload) frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, bytes]] = []
        start = 0
        while len(buffer) - start >= HEADER.size:
            length, ident = HEADER.unpack_from(buffer, start)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes")
            end = start + HEADER.size + length
            if end > len(buffer):
                break
            frames.append((ident, bytes(buffer[start + HEADER.size : end])))
            start = end
        del buffer[:start]
        return frames


class Link(asyncio.Protocol):
    """One side of the mTLS connection between the pair. Frames written in one loop
    turn leave in one write, as tether's streams do."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._reader = FrameReader()
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.closed = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except ValueError:
            if self.transport is not None:
                self.transport.abort()
            return
        for ident, payload in frames:
            self.frame(ident, payload)

    def frame(self, ident: int, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, ident: int, payload: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(HEADER.pack(len(payload), ident))
        self._out.append(payload)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None:
            self.transport.write(b"".join(out))


# ---------------------------------------------------------------------- caller


class CallerLink(Link):
    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[int, EdgeConnection] = {}
        self._next = 0

    def forward(self, edge: EdgeConnection, payload: bytes) -> int:
        self._next = ident = (self._next + 1) & 0xFFFFFFFF
        self._pending[ident] = edge
        self.send(ident, payload)
        return ident

    def frame(self, ident: int, payload: bytes) -> None:
        edge = self._pending.pop(ident, None)
        if edge is not None:
            edge.answer(ident, int(payload[:3]), payload[3:])


class EdgeConnection(asyncio.Protocol):
    """One load connection: requests in order, each forwarded whole over the link."""

    def __init__(self, link: CallerLink) -> None:
        self._link = link
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        # Pipelined requests are answered in their order, whichever answer comes first.
        self._order: deque[int] = deque()
        self._answers: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(http_response(400, b""))
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        payload = b"%s %s\n%s" % (method, self._url, b"".join(self._body))
        self._url, self._body = b"", []
        self._order.append(self._link.forward(self, payload))

    def answer(self, ident: int, status: int, body: bytes) -> None:
        answers, order = self._answers, self._order
        answers[ident] = http_response(status, body)
        out = []
        while order and order[0] in answers:
            out.append(answers.pop(order.popleft()))
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


async def run_caller(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    context = _tls(args, ssl.Purpose.SERVER_AUTH)
    _, link = await loop.create_connection(
        CallerLink,
        "127.0.0.1",
        args.peer_port,
        ssl=context,
        server_hostname=args.peer_name if context else None,
    )
    server = await loop.create_server(
        lambda: EdgeConnection(link), "127.0.0.1", args.listen, backlog=1024
    )
    await _serve(server, link.closed)


# ---------------------------------------------------------------------- callee


class AppConnection(asyncio.Protocol):
    """One keep-alive connection to the app, one request at a time."""

    def __init__(self, pool: AppPool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._ident = 0
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._pool.ready(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.lost(self, self._ident)

    def send(self, ident: int, method: bytes, path: bytes, body: bytes) -> None:
        assert self.transport is not None
        self._ident = ident
        head = b"%s %s HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % (
            method,
            path,
            len(body),
        )
        self.transport.write(head + body)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.abort()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        body, self._body = b"".join(self._body), []
        ident, self._ident = self._ident, 0
        self._pool.answered(self, ident, status, body)


class AppPool:
    """Idle app connections, and requests waiting for one; grows as the load needs."""

    def __init__(self, port: int, answer: Answer, limit: int = 64) -> None:
        self._port = port
        self._answer = answer
        self._limit = limit
        self._idle: list[AppConnection] = []
        self._queue: deque[tuple[int, bytes, bytes, bytes]] = deque()
        self._count = 0
        self._loop = asyncio.get_running_loop()

    def request(self, ident: int, method: bytes, path: bytes, body: bytes) -> None:
        if self._idle:
            self._idle.pop().send(ident, method, path, body)
            return
        self._queue.append((ident, method, path, body))
        if self._count < self._limit:
            self._count += 1
            self._loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            await self._loop.create_connection(lambda: AppConnection(self), "127.0.0.1", self._port)
        except OSError:
            self._count -= 1
            while self._queue and self._count == 0:
                self._answer(self._queue.popleft()[0], 502, b"")

    def ready(self, connection: AppConnection) -> None:
        if self._queue:
            connection.send(*self._queue.popleft())
        else:
            self._idle.append(connection)

    def answered(self, connection: AppConnection, ident: int, status: int, body: bytes) -> None:
        self._answer(ident, status, body)
        self.ready(connection)

    def lost(self, connection: AppConnection, ident: int) -> None:
        self._count -= 1
        if connection in self._idle:
            self._idle.remove(connection)
        if ident:
            self._answer(ident, 502, b"")


class CalleeLink(Link):
    def __init__(self, app_port: int) -> None:
        super().__init__()
        self._app = AppPool(app_port, self.answer)

    def frame(self, ident: int, payload: bytes) -> None:
        line, _, body = payload.partition(b"\n")
        method, _, path = line.partition(b" ")
        self._app.request(ident, method, path, body)

    def answer(self, ident: int, status: int, body: bytes) -> None:
        self.send(ident, b"%03d%s" % (status, body))


async def run_callee(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    context = _tls(args, ssl.Purpose.CLIENT_AUTH)
    server = await loop.create_server(
        lambda: CalleeLink(args.app_port), "127.0.0.1", args.listen, ssl=context
    )
    await _serve(server, loop.create_future())


def _tls(args: argparse.Namespace, purpose: ssl.Purpose) -> ssl.SSLContext | None:
    """mTLS with the given certificates, or None (plain TCP) when there are none."""
    if not args.cert:
        return None
    context = ssl.create_default_context(purpose, cafile=args.roots)
    context.load_cert_chain(args.cert, args.key)
    context.verify_mode = ssl.CERT_REQUIRED  # both sides show a certificate
    return context


async def _serve(server: asyncio.AbstractServer, done: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def stopping() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    print("floor proxy listening", flush=True)
    await asyncio.wait([stop, done], return_when=asyncio.FIRST_COMPLETED)
    server.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_proxy")
    parser.add_argument("role", choices=("caller", "callee"))
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--peer-port", type=int, help="caller: the callee's port")
    parser.add_argument("--peer-name", help="caller: the DNS name in the callee's certificate")
    parser.add_argument("--app-port", type=int, help="callee: the app's port")
    parser.add_argument("--cert", help="certificate chain, PEM (none: plain TCP)")
    parser.add_argument("--key")
    parser.add_argument("--roots", help="the CA the peer's chain must end at")
    args = parser.parse_args(argv)
    uvloop.run(run_caller(args) if args.role == "caller" else run_callee(args))


if __name__ == "__main__":
    main()


def start_pair(
    certs: tuple[CertPaths, CertPaths] | None,
    ports: tuple[int, int],
    app_port: int,
    env: dict[str, str],
    logdir: Path,
    procs: list[Proc],
) -> str:
    """Starts the callee (``floor-b``, in front of the app) then the caller (``floor-a``),
    appending each to ``procs`` at once so the benchmark stops it also on failure.
    ``certs``: the caller's and the callee's, or None for plain TCP. Returns a problem
    or ""."""
    a_port, b_port = ports
    module = [sys.executable, "-m", "bench.floor_proxy"]

    def tls(paths: CertPaths | None) -> list[str]:
        if paths is None:
            return []
        return ["--cert", str(paths.chain), "--key", str(paths.key), "--roots", str(paths.roots)]

    a_certs, b_certs = certs if certs is not None else (None, None)
    sides = (
        ("floor-b", b_port, ["callee", "--app-port", str(app_port), *tls(b_certs)]),
        ("floor-a", a_port, ["caller", "--peer-port", str(b_port), *tls(a_certs),
                             *(["--peer-name", a_certs.peer_name] if a_certs else [])]),
    )  # fmt: skip
    for name, port, argv in sides:
        proc = start(name, [*module, *argv, "--listen", str(port)], env, logdir)
        procs.append(proc)
        problem = wait_listening(port, proc)
        if problem:
            return f"{name}: {problem}\n{proc.log_tail()}"
    return ""
