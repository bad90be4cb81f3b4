"""One call on the lean gRPC client: messages out (held back by HTTP/2 flow
control, in order), messages in (to a listener's callbacks, or queued for
``read``), and the final status.

A stream opened with a listener costs no task or future per message: the
connection's ``data_received`` hands each message to ``listener.message``."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from proxy.grpcwire.client_status import (
    RpcError,
    Status,
    check_response_head,
    status_from_reset,
    status_from_trailers,
)
from proxy.grpcwire.messages import MessageError, MessageReader, encode_message

if TYPE_CHECKING:
    from proxy.grpcwire.client_connection import ClientConnection


class StreamListener(Protocol):
    def headers(self) -> None:
        """The server accepted the call (its response headers arrived)."""

    def message(self, payload: bytes) -> None:
        """One message from the server."""

    def closed(self, status: Status) -> None:
        """The call is over (called once; no message follows)."""


class ClientStream:
    __slots__ = (
        "_connection",
        "_end_requested",
        "_end_sent",
        "_got_headers",
        "_headers_waiter",
        "_held",
        "_listener",
        "_outgoing",
        "_queue",
        "_reader",
        "_readers",
        "_status",
        "_timer",
        "_writers",
        "response_headers",
        "stream_id",
        "trailers",
    )

    def __init__(
        self,
        connection: ClientConnection,
        stream_id: int,
        limit: int,
        listener: StreamListener | None,
    ) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self._listener = listener
        self._reader = MessageReader(limit)
        self._outgoing = bytearray()  # bytes waiting for flow-control window
        self._writers: list[asyncio.Future[None]] = []
        self._end_requested = False
        self._end_sent = False
        self._got_headers = False
        self._headers_waiter: asyncio.Future[None] | None = None
        self._queue: deque[bytes] = deque()
        self._readers: list[asyncio.Future[None]] = []
        self._held = 0  # received bytes not yet given back to the peer's window
        self._status: Status | None = None
        self._timer: asyncio.TimerHandle | None = None
        # As received (pseudo-headers included), for whoever relays them: the
        # response headers, and the trailers (those of a trailers-only answer too).
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] = []

    # ------------------------------------------------------------------ caller side

    @property
    def done(self) -> bool:
        return self._status is not None

    def write(self, payload: bytes) -> bool:
        """Queue one message; True when the windows let all that is queued go now.

        Raises RpcError when the call is already over."""
        if self._status is not None:
            raise RpcError.of(self._status)
        if self._end_requested:
            raise RpcError("INTERNAL", "write after half-close")
        self._outgoing += encode_message(payload)
        # Sent at the connection's flush in this iteration, with every other message
        # written to this stream by then, in as few DATA frames as they fit in.
        return self._connection.sending(self, len(self._outgoing))

    async def send(self, payload: bytes) -> None:
        """Write one message and wait until flow control let all of it go."""
        if self.write(payload):
            return
        await self.drain()

    async def drain(self) -> None:
        if not self._outgoing or self._status is not None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._writers.append(waiter)
        await waiter
        if self._status is not None and not self._status.ok:
            raise RpcError.of(self._status)

    def end(self) -> None:
        """Half-close: no more messages from us (sent once buffered bytes are out)."""
        if self._status is not None or self._end_requested:
            return
        self._end_requested = True
        self.pump()

    async def initial_metadata(self) -> None:
        """Wait for the response headers (returns at once when the call ended without them)."""
        if self._got_headers or self._status is not None:
            return
        if self._headers_waiter is None:
            self._headers_waiter = asyncio.get_running_loop().create_future()
        await self._headers_waiter

    async def read(self) -> bytes | None:
        """The next message; None when the server has no more (then see ``status``)."""
        while not self._queue:
            if self._status is not None:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._readers.append(waiter)
            await waiter
        payload = self._queue.popleft()
        if not self._queue and self._held:
            # The reader caught up: give the peer its window back.
            self._connection.give_back(self.stream_id, self._held)
            self._held = 0
        return payload

    async def status(self) -> Status:
        while self._status is None:
            waiter = asyncio.get_running_loop().create_future()
            self._readers.append(waiter)
            await waiter
        return self._status

    def cancel(self, message: str = "Cancelled") -> None:
        """End the call here and tell the server (RST_STREAM CANCEL)."""
        if self._status is None:
            self.finish(Status("CANCELLED", message), reset=True)

    # ------------------------------------------------------------- connection side

    def set_deadline(self, timer: asyncio.TimerHandle) -> None:
        self._timer = timer

    def deadline_passed(self) -> None:
        if self._status is None:
            self.finish(Status("DEADLINE_EXCEEDED", "Deadline Exceeded"), reset=True)

    def pump(self) -> None:
        """Send what the window allows; then the half-close when everything is out."""
        if self._status is not None:
            return  # over (cancelled, reset, failed): nothing more goes out
        if self._outgoing:
            sent = self._connection.send_some(self.stream_id, self._outgoing)
            if sent:
                del self._outgoing[:sent]
            if self._outgoing:
                self._connection.blocked(self)
                return
            writers, self._writers = self._writers, []
            for waiter in writers:
                if not waiter.done():
                    waiter.set_result(None)
        if self._end_requested and not self._end_sent:
            self._end_sent = True
            self._connection.send_end(self.stream_id)

    def on_headers(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        failure = check_response_head(headers)
        if ended:
            # Trailers-only: the status is in these headers.
            self.trailers = headers
            self.finish(status_from_trailers(headers) or failure or _NO_STATUS)
            return
        if failure is not None:
            self.finish(failure, reset=True)
            return
        self._got_headers = True
        self.response_headers = headers
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_result(None)
        if self._listener is not None:
            self._listener.headers()

    def on_data(self, data: bytes, flow_length: int) -> None:
        if self._status is not None:
            self._connection.acknowledge(self.stream_id, flow_length)
            return
        try:
            messages = self._reader.feed(data)
        except MessageError as exc:
            self._connection.acknowledge(self.stream_id, flow_length)
            self.finish(Status(exc.code, str(exc)), reset=True)
            return
        listener = self._listener
        if listener is not None:
            self._connection.acknowledge(self.stream_id, flow_length)
            for payload in messages:
                listener.message(payload)
            return
        if self._queue:
            self._held += flow_length  # a slow reader: hold the window back
        else:
            self._connection.acknowledge(self.stream_id, flow_length)
        if messages:
            self._queue.extend(messages)
            self._wake_readers()

    def on_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = headers
        status = status_from_trailers(headers) or _NO_STATUS
        if status.ok and self._reader.pending:
            status = Status("INTERNAL", "stream ended inside a message")
        self.finish(status)

    def on_end(self) -> None:
        # END_STREAM on a DATA frame: the server ended without trailers.
        if self._status is None:
            self.finish(Status("INTERNAL", "server closed the stream without sending trailers"))

    def on_reset(self, error_code: int) -> None:
        if self._status is None:
            self.finish(status_from_reset(error_code))

    def finish(self, status: Status, reset: bool = False) -> None:
        """The call is over: wake everyone, tell the listener, leave the connection."""
        if self._status is not None:
            return
        self._status = status
        if self._timer is not None:
            self._timer.cancel()
        self._outgoing.clear()
        if self._held:
            self._connection.give_back(self.stream_id, self._held)
            self._held = 0
        self._connection.stream_done(self, reset)
        writers, self._writers = self._writers, []
        for waiter in writers:
            if not waiter.done():
                waiter.set_result(None)
        if self._headers_waiter is not None and not self._headers_waiter.done():
            self._headers_waiter.set_result(None)
        self._wake_readers()
        if self._listener is not None:
            self._listener.closed(status)

    def _wake_readers(self) -> None:
        readers, self._readers = self._readers, []
        for waiter in readers:
            if not waiter.done():
                waiter.set_result(None)


_NO_STATUS = Status("UNKNOWN", "server sent no grpc-status")
