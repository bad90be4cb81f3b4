"""CPU per request/response cycle through tether's HTTP app channel (HttpAppChannel +
AppConnection), printed, not asserted: ``python -m bench.app_channel_cycle [CALLS]``.

  fake:     the connection sits on an in-process fake transport that answers each
            request with pre-built bytes on the next loop turn (no syscalls): the
            channel's own cost plus one loop turn.
  loopback: a real TCP connection to a raw asyncio app in another process answering
            1 KB from pre-built bytes; CPU of this (client) process per call.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import time

import uvloop

from proxy.app.channel import HttpAppChannel
from proxy.app.connection import AppConnection
from proxy.core.body import Body

BODY = b"x" * 1024
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: Wed, 02 Dec 2026 03:00:00 GMT\r\n"
    b"server: bench\r\ncontent-length: 1024\r\n\r\n" + BODY
)
HEADERS = [
    (b"content-type", b"application/json"),
    (b"dapr-caller-app-id", b"checkout"),
    (b"dapr-callee-app-id", b"orders"),
    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    (b"user-agent", b"bench/1.0"),
]


class FakeTransport:
    def __init__(self, protocol: AppConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.protocol = protocol
        self.loop = loop

    def is_closing(self) -> bool:
        return False

    def writelines(self, pieces: list[bytes]) -> None:
        self.loop.call_soon(self.protocol.data_received, ANSWER)

    def write(self, data: bytes) -> None:
        self.loop.call_soon(self.protocol.data_received, ANSWER)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def run_calls(channel: HttpAppChannel, n: int) -> float:
    body = Body(BODY)
    for _ in range(200):  # warm up
        response = await channel.call("POST", "/v1/orders", HEADERS, body)
        await response.body.read_all(1 << 20)
    start = time.process_time()
    for _ in range(n):
        response = await channel.call("POST", "/v1/orders", HEADERS, body)
        data = await response.body.read_all(1 << 20)
    elapsed = time.process_time() - start
    assert response.status == 200 and data == BODY
    return elapsed / n * 1e6


async def fake(n: int) -> float:
    loop = asyncio.get_running_loop()
    channel = HttpAppChannel("127.0.0.1", 9)
    connection = AppConnection()
    connection.connection_made(FakeTransport(connection, loop))  # type: ignore[arg-type]
    channel._idle.append(connection)
    return await run_calls(channel, n)


class App(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # Each request: a head and a 1 KB body.
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0 or len(self.buffer) < end + 4 + 1024:
                return
            self.buffer = self.buffer[end + 4 + 1024 :]
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


def serve(sock: socket.socket) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(App, sock=sock)
        await server.serve_forever()

    uvloop.run(main())


async def loopback(port: int, n: int) -> float:
    channel = HttpAppChannel("127.0.0.1", port)
    try:
        return await run_calls(channel, n)
    finally:
        await channel.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = 5
    fakes = [uvloop.run(fake(n)) for _ in range(rounds)]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = multiprocessing.get_context("fork").Process(target=serve, args=(sock,), daemon=True)
    server.start()
    try:
        loops = [uvloop.run(loopback(sock.getsockname()[1], n)) for _ in range(rounds)]
    finally:
        server.terminate()
        server.join()
    print(f"fake transport, CPU per call: {_summary(fakes)}")
    print(f"loopback app,   CPU per call: {_summary(loops)}")


def _summary(runs: list[float]) -> str:
    listed = ", ".join(f"{x:.1f}" for x in runs)
    return f"median {sorted(runs)[len(runs) // 2]:.1f} us (runs: {listed})"


if __name__ == "__main__":
    main()
