"""The benchmark's target app: as cheap an HTTP/1.1 server as Python allows.

``python -m bench.fast_app PORT`` listens on 127.0.0.1:PORT and answers every
request with ``200`` and a fixed 1 KB body. It parses only what it must: the
request head up to the blank line, ``Content-Length`` for the body, and
``Connection: close``. Several requests in one read (pipelining) are answered in
order. Chunked request bodies are refused with ``411`` and the connection closed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import cast

import uvloop

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
RESPONSE_CLOSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"\r\n" + BODY
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
LENGTH_REQUIRED = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024


class FastHttp(asyncio.Protocol):
    __slots__ = ("_buffer", "_close_after", "_need", "_transport")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._need = -1  # bytes of body still to skip; -1 while reading a head
        self._close_after = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        while True:
            if self._need < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        out.append(BAD_REQUEST)
                        self._close_after = True
                    break
                head = bytes(buffer[:end]).lower()
                del buffer[: end + 4]
                length, ok = _content_length(head)
                if not ok:
                    out.append(LENGTH_REQUIRED if b"transfer-encoding:" in head else BAD_REQUEST)
                    self._close_after = True
                    break
                self._close_after = b"connection: close" in head
                self._need = length
            if len(buffer) < self._need:
                self._need -= len(buffer)
                buffer.clear()
                if self._need:
                    break
            else:
                del buffer[: self._need]
            self._need = -1
            out.append(RESPONSE_CLOSE if self._close_after else RESPONSE)
            if self._close_after:
                break
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self._close_after:
            transport.close()
            self._transport = None


def _content_length(head: bytes) -> tuple[int, bool]:
    """The request body's length from a lower-cased head; ``(0, False)`` if unusable."""
    if b"transfer-encoding:" in head:
        return 0, False
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0, True
    start = at + len(b"\r\ncontent-length:")
    end = head.find(b"\r\n", start)
    text = head[start:] if end < 0 else head[start:end]
    try:
        length = int(text.strip())
    except ValueError:
        return 0, False
    if length < 0 or length > MAX_BODY:
        return 0, False
    return length, True


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FastHttp, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"fast_app listening on 127.0.0.1:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m bench.fast_app PORT", file=sys.stderr)
        return 2
    uvloop.run(serve(int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
