"""The flow control every HTTP/1.1 protocol object of the sidecar shares (the edge's
server connections, the app channel's client connections): reads paused while nobody
takes the bytes, writes waiting on the transport's own high-water mark."""

from __future__ import annotations

import asyncio
from typing import cast


class FlowProtocol(asyncio.Protocol):
    """An ``asyncio.Protocol`` with read pausing and a drain that waits only when the
    transport said it is full (no future per write otherwise)."""

    __slots__ = ("_drain_waiter", "_loop", "_read_paused", "_transport", "_write_paused")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the connection was lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()

    def _writable(self) -> asyncio.Transport:
        transport = self._transport
        if transport is None or transport.is_closing():
            # uvloop raises RuntimeError (not OSError) on a write to a closed transport.
            raise ConnectionResetError("the connection is closed")
        return transport

    def _write(self, data: bytes | None) -> None:
        if data:
            self._writable().write(data)

    async def _drain(self) -> None:
        while self._write_paused:
            self._writable()
            waiter = self._drain_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
