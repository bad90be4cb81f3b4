"""One call on the lean gRPC server: what its handler sees (metadata, the peer,
abort, initial metadata, writes, the request stream) and the state the
connection keeps of it. One object per call, so a call costs few allocations."""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from proxy.grpcwire.messages import MessageReader

if TYPE_CHECKING:
    from proxy.grpcwire.handlers import RpcMethod
    from proxy.grpcwire.server_connection import ServerConnection

Metadata = Sequence[tuple[str, str | bytes]]
# Headers as they travel (lower-case names, ``-bin`` values in base64): relayed untouched.
RawHeaders = Sequence[tuple[bytes, bytes]]

# Headers gRPC itself uses: not the call's metadata (grpcio leaves them out too).
_RESERVED = frozenset(
    (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)

# A writer waits for the peer once this much is queued behind flow control.
WRITE_HIGH_WATER = 1024 * 1024


class AbortError(Exception):
    """A handler ended its call with a gRPC status (``code`` is its name), and
    ``trailing`` metadata beside it (``-bin`` values as bytes)."""

    def __init__(self, code: str, message: str, trailing: Metadata = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailing = trailing


class StreamClosed(Exception):
    """The call is over (answered, reset by the peer, or its connection lost)."""


class ServerCall:
    """A call as its handler sees it (grpc.aio's ServicerContext, the parts tether uses)."""

    __slots__ = (
        "_drained",
        "_headers",
        "_queue",
        "_unacked",
        "_waiter",
        "client_done",
        "connection",
        "finished",
        "headers_sent",
        "method",
        "outbound",
        "outbound_size",
        "peer",
        "reader",
        "received_bytes",
        "sent_bytes",
        "stream_id",
        "task",
        "timer",
        "trailers",
    )

    def __init__(
        self,
        stream_id: int,
        connection: ServerConnection,
        headers: list[tuple[bytes, bytes]],
        method: RpcMethod,
        max_message_size: int,
        peer: object,
    ) -> None:
        self.stream_id = stream_id
        self.connection = connection
        self.method = method
        self.peer = peer
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reader = MessageReader(max_message_size)
        self.received_bytes = 0  # request messages, as they came (for metrics)
        self.sent_bytes = 0  # response messages
        self.headers_sent = False
        self.finished = False  # our side: a status is decided (sent or queued)
        self.client_done = False
        # DATA waiting for the peer's flow-control window, oldest first.
        self.outbound: deque[memoryview] = deque()
        self.outbound_size = 0
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self._headers = headers
        self._queue: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._unacked = 0
        self._drained: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ the handler's side

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """The caller's metadata; ``-bin`` values base64-decoded to bytes, as grpcio gives them."""
        pairs: list[tuple[str, str | bytes]] = []
        for name, value in self._headers:
            if name[:1] == b":" or name in _RESERVED:
                continue
            key = name.decode("ascii")
            if key.endswith("-bin"):
                pairs.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
            else:
                pairs.append((key, value.decode("utf-8", "replace")))
        return tuple(pairs)

    @property
    def request_headers(self) -> list[tuple[bytes, bytes]]:
        """The request's headers as received (pseudo-headers included), for relaying."""
        return self._headers

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline (``grpc-timeout``); None without one."""
        timer = self.timer
        if timer is None:
            return None
        return max(timer.when() - self.connection.loop.time(), 0.0)

    def send_raw_headers(self, headers: RawHeaders) -> None:
        """Send the response headers now, with relayed metadata (see ``RawHeaders``)."""
        if self.finished:
            raise StreamClosed("the call is over")
        if not self.headers_sent:
            self.connection.send_headers(self, raw=headers)

    def end_raw(self, trailers: RawHeaders) -> None:
        """End the call with relayed trailers: ``grpc-status`` (any code), ``grpc-message``
        as encoded, and trailing metadata; sent once the queued messages are out."""
        ok = any(name == b"grpc-status" and value == b"0" for name, value in trailers)
        self.connection.finish_raw(self, trailers, ok)

    def abort(self, code: str, message: str, trailing: Metadata = ()) -> NoReturn:
        """End the call with status ``code`` (a name such as "NOT_FOUND") and
        ``trailing`` metadata (e.g. ``grpc-status-details-bin``)."""
        raise AbortError(code, message, trailing)

    def send_initial_metadata(self, metadata: Metadata = ()) -> None:
        """Send the response headers now (a stream's caller may wait for them)."""
        if self.finished:
            raise StreamClosed("the call is over")
        if not self.headers_sent:
            self.connection.send_headers(self, metadata)

    async def write(self, message: Any) -> None:
        """Send one response message; waits only while the peer is not reading."""
        if self.finished:
            raise StreamClosed("the call is over")
        self.connection.send_message(self, self.method.serialize(message))
        if self.outbound_size > WRITE_HIGH_WATER or self.connection.write_paused:
            await self.drained()

    def __aiter__(self) -> ServerCall:
        return self

    async def __anext__(self) -> Any:
        """The next request message of a client stream."""
        queue = self._queue
        if not queue:
            if self.client_done or self.finished:
                raise StopAsyncIteration
            self._waiter = waiter = self.connection.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if not queue:
                raise StopAsyncIteration
        message = queue.popleft()
        if not queue and self._unacked:
            # The backlog is consumed: hand the window back so the peer sends more.
            self.connection.acknowledge(self.stream_id, self._unacked)
            self._unacked = 0
        return message

    def take_ready(self) -> list[Any]:
        """The request messages already received, taken without waiting (a relay sends
        them on together with the call's headers)."""
        queue = self._queue
        if not queue:
            return []
        taken = list(queue)
        queue.clear()
        if self._unacked:
            self.connection.acknowledge(self.stream_id, self._unacked)
            self._unacked = 0
        return taken

    # ------------------------------------------------------------ the connection's side

    def deliver(self, messages: list[Any], flow_controlled: int) -> bool:
        """Queue request messages; True when their bytes may be acknowledged at once
        (the handler keeps up). Otherwise they are, once the handler has read them."""
        queue = self._queue
        backlog = bool(queue)
        queue.extend(messages)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if backlog:
            self._unacked += flow_controlled
            return False
        return True

    def take_unary(self) -> tuple[bool, Any]:
        """The single request of a unary call: (True, message), or (False, None)."""
        if len(self._queue) != 1:
            return False, None
        return True, self._queue.popleft()

    def end_requests(self) -> None:
        self.client_done = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def unacknowledged(self) -> int:
        return self._unacked

    async def drained(self) -> None:
        """Wait until queued DATA has gone out (or the call is over)."""
        while (self.outbound_size or self.connection.write_paused) and not self.finished:
            if self._drained is None or self._drained.done():
                self._drained = self.connection.loop.create_future()
            await self._drained
        if self.finished:
            raise StreamClosed("the call is over")

    def wake_writer(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def cancel(self) -> None:
        """The call is over on our side without an answer to send: stop its handler."""
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.end_requests()
        self.wake_writer()
        task = self.task
        if task is not None and not task.done():
            task.cancel()
