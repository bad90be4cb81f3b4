"""CPU per request/response cycle through the edge's ``ServerConnection``, sockets aside.

``python -m bench.edge_cycle [ITERATIONS]`` feeds a 1 KB POST to ``data_received`` on a
fake transport, lets the handler answer 1 KB, and prints the CPU time per cycle
(``time.process_time``), with and without the handler's share. Printed, never asserted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import uvloop

from proxy.core.body import Body
from proxy.edge.http_messages import HttpLimits, HttpRequest, HttpResponse, plain_reject
from proxy.edge.http_site import Site

REQUEST = (
    b"POST /v1.0/invoke/orders/method/new HTTP/1.1\r\nHost: 127.0.0.1:3500\r\n"
    b"User-Agent: bench\r\nAccept: */*\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 1024\r\n\r\n" + b"x" * 1024
)
ANSWER = HttpResponse(200, [(b"content-type", b"application/octet-stream")], Body(b"y" * 1024))


class FakeTransport:
    """Takes what is written; counts the cycles answered."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += 1

    def writelines(self, data: list[bytes]) -> None:
        self.written += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...


async def handler(request: HttpRequest) -> HttpResponse:
    return HttpResponse(ANSWER.status, ANSWER.headers, ANSWER.body)


async def main(iterations: int) -> None:
    from proxy.edge.http_connection import ServerConnection

    site = Site(handler, HttpLimits(), None, plain_reject)
    conn = ServerConnection(site)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for _ in range(1000):  # warm up
        conn.data_received(REQUEST)
        await asyncio.sleep(0)
    baseline = transport.written
    started = time.process_time()
    for _ in range(iterations):
        conn.data_received(REQUEST)
        await asyncio.sleep(0)
    spent = time.process_time() - started
    assert transport.written - baseline >= iterations, "not every request was answered"
    # The loop turn and the handler's own coroutine, for comparison.
    started = time.process_time()
    for _ in range(iterations):
        await handler(None)  # type: ignore[arg-type]
        await asyncio.sleep(0)
    floor = time.process_time() - started
    print(
        f"{iterations} cycles: {spent / iterations * 1e6:.1f} us CPU per cycle "
        f"(loop turn + handler alone: {floor / iterations * 1e6:.1f} us)"
    )


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
