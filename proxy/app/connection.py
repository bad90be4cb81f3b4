"""One keep-alive connection from the sidecar to its app: an ``asyncio.Protocol``
driving h11's client state machine.

Bytes from the app go straight into h11 in ``data_received``; the task waiting for
the answer is woken only then (one future per wait, none per read call), and when
nobody waits (a streamed answer the edge has not asked for yet) reading pauses, so
the kernel, not our memory, holds the rest. Writes of streamed request bodies wait
on the transport's high-water mark."""

from __future__ import annotations

import asyncio

import h11

from proxy.core.flow import FlowProtocol

_MAX_RESPONSE_HEADER_BYTES = 64 * 1024


class EmptyResponse(Exception):
    """The app closed a connection before sending a response."""


class AppConnection(FlowProtocol):
    __slots__ = ("_answered", "_eof", "_lost", "_waiter", "_written", "conn", "idle")

    def __init__(self) -> None:
        super().__init__()
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_RESPONSE_HEADER_BYTES)
        # Of the request in progress: did any of it go out, did any answer come back.
        self._written = False
        self._answered = False
        self._eof = False
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None
        self.idle = True

    @property
    def written(self) -> bool:
        return self._written

    @property
    def answered(self) -> bool:
        return self._answered

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # Nothing was asked: an unsolicited answer desyncs the connection (Go
            # drops such a connection too), so it is never used again.
            self.close()
            return
        self._answered = True
        self.conn.receive_data(data)
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        if self._answered:
            self.conn.receive_data(b"")  # h11 decides: the end of a close-framed body, or an error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        super().connection_lost(exc)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
            return
        # Nobody reads the answer now (or the reader is already woken: libuv reads a
        # socket up to 32 times per loop turn): leave the rest in the kernel.
        self._pause_reading()

    def begin(self) -> None:
        """A request starts on this connection."""
        self.idle = False
        self._written = self._answered = False

    def is_closing(self) -> bool:
        transport = self._transport
        return self._eof or self._lost or transport is None or transport.is_closing()

    def send(self, *pieces: bytes | None) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            # Lost while idle (a reset, say); uvloop raises RuntimeError on a write here.
            raise ConnectionResetError("the connection to the app is closed")
        transport.writelines([piece for piece in pieces if piece])
        # asyncio closes the transport when the kernel refuses the first send (or drops
        # the write on a transport already lost); then not a byte of it went out.
        if not transport.is_closing():
            self._written = True

    def send_whole(self, request: h11.Request, data: bytes) -> None:
        """Head, body and end in one write: one syscall for the common small request."""
        conn = self.conn
        head = conn.send(request)
        # The body is passed through, not copied into one buffer with the head.
        body = (conn.send_with_data_passthrough(h11.Data(data=data)) or []) if data else []
        self.send(head, *body, conn.send(h11.EndOfMessage()))

    async def drain(self) -> None:
        if self._write_paused:
            await self._drain()

    async def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self._eof and not self._answered:
                raise EmptyResponse("the app closed the connection without answering")
            if self._lost:
                raise ConnectionResetError("the connection to the app was lost")
            self._resume_reading()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def ready_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """The next event if it is already in hand, without waiting."""
        return self.conn.next_event()

    def reusable(self) -> bool:
        conn = self.conn
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE and not self.is_closing()

    def recycle(self) -> None:
        self.conn.start_next_cycle()
        self.idle = True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
