"""Caller side of tether's multiplexed transport: one ``Connect`` stream per
peer connection (on the lean gRPC client, ``proxy.grpcwire``), calls matched to
answers by ``call_id``.

A pending call always ends: with its answer, with the stream's failure when the
stream ends or breaks, or with DEADLINE_EXCEEDED when its bound passes. Answers
are handed over in the connection's read callback: no reader task."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Protocol

from google.protobuf.message import DecodeError

from proxy.core.body import Body
from proxy.core.errors import InvocationFailed
from proxy.core.grpc_status import grpc_code_name
from proxy.grpcwire.client import ClientStream, RpcError, Status, StreamListener
from proxy.hop.wire import MUX_CALL_TIMEOUT, NOT_STARTED_CODES
from proxy.protos import common_pb2, internals_pb2, mux_pb2

CONNECT = "/tether.internal.v1.Multiplex/Connect"
FETCH_BODY = "/tether.internal.v1.Multiplex/FetchBody"


class StreamOpener(Protocol):
    """What opens calls to the peer: ``proxy.grpcwire.client.Channel``."""

    async def open(
        self,
        path: str,
        metadata: tuple[tuple[bytes, bytes], ...] = (),
        timeout: float | None = None,
        listener: StreamListener | None = None,
    ) -> ClientStream: ...


class MuxUnsupported(Exception):
    """The peer does not serve tether's Multiplex service (e.g. it is daprd)."""


class MuxConnection:
    def __init__(self, channel: StreamOpener) -> None:
        self._channel = channel
        self._stream: ClientStream | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[mux_pb2.MuxFrame]] = {}
        self._answered = False
        # Response bodies handed out (by ticket) whose fetch has not finished.
        self._bodies = 0
        # Set by drain(): when nothing is pending, the connection may close.
        self._quiet: asyncio.Event | None = None
        # Set once the peer has accepted the stream (or the stream is over).
        self._opened = asyncio.Event()
        self.broken = False
        # Kept: on Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._opener = self._loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            stream = await self._channel.open(CONNECT, listener=self)
        except RpcError as exc:
            # Nothing was written: every call waits for the stream to be accepted.
            message = exc.message or exc.code.lower()
            self._end(InvocationFailed(message, exc.code, maybe_delivered=False))
            return
        if self.broken:
            stream.cancel()
        else:
            self._stream = stream

    async def invoke(
        self,
        request: internals_pb2.InternalInvokeRequest,
        data: bytes,
        timeout: float | None = MUX_CALL_TIMEOUT,
    ) -> tuple[internals_pb2.InternalInvokeResponse, Body]:
        """Send one call; return the response head and its body.

        ``timeout`` bounds the wait for the answer (None: the caller bounds it,
        e.g. with a resiliency timeout). Raises MuxUnsupported (nothing was
        processed; use another transport) or InvocationFailed, marked
        ``maybe_delivered`` once the call's frame went out on the accepted stream.
        """
        if self.broken:
            raise InvocationFailed("transport closed", "UNAVAILABLE", maybe_delivered=False)
        call_id = next(self._ids)
        frame = mux_pb2.MuxFrame(call_id=call_id)
        frame.request.CopyFrom(request)
        frame.request.message.data.value = data
        loop = self._loop
        answer: asyncio.Future[mux_pb2.MuxFrame] = loop.create_future()
        # Registered before anything awaits, so the stream's failure reaches it.
        self._pending[call_id] = answer
        # One timer per call, not an asyncio.timeout scope (several times the cost).
        deadline: _Deadline | None = None
        timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            deadline = _Deadline(answer, loop)
            timer = loop.call_later(timeout, deadline)
        written = False
        try:
            # No frame is written before the peer accepts the stream: a peer refusing
            # it (daprd: UNIMPLEMENTED) must not have processed anything.
            if not self._opened.is_set():
                await self._opened.wait()
            stream = self._stream
            if not answer.done() and stream is not None:
                try:
                    # Goes out in this loop iteration unless flow control holds it back.
                    sent = stream.write(frame.SerializeToString())
                    written = True  # from here on the callee may have the call
                    if not sent:
                        await stream.drain()
                except RpcError:
                    pass  # the stream failed under the write; its end reports why
            if deadline is not None:
                deadline.sent()
            reply = await answer
            if reply.body_ticket:
                self._bodies += 1  # counted before the quiet check below: a fetch is to come
        except InvocationFailed as exc:
            if written or not exc.maybe_delivered:
                raise
            # The stream failed before this call's frame went out: nobody has it.
            raise InvocationFailed(str(exc), exc.grpc_code, maybe_delivered=False) from exc
        except asyncio.CancelledError:
            if deadline is not None and deadline.interrupted():
                raise _deadline_exceeded() from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(call_id, None)
            self._check_quiet()
        if reply.HasField("error"):
            code = grpc_code_name(reply.error.code)
            # The callee's own answer: UNAVAILABLE/UNAUTHENTICATED means "not started".
            started = code not in NOT_STARTED_CODES
            raise InvocationFailed(reply.error.message, code, maybe_delivered=started)
        response = reply.response
        head = response.message.data.value
        rest = self._fetch(reply.body_ticket) if reply.body_ticket else None
        return response, Body(head, rest)

    async def drain(self, grace: float) -> None:
        """No new calls come here any more (the caller dialled a new connection): let
        the calls in flight and their bodies finish, for up to ``grace`` seconds, then
        close."""
        self._quiet = asyncio.Event()
        self._check_quiet()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._quiet.wait()
        await self.close()

    def _check_quiet(self) -> None:
        if self._quiet is not None and not self._pending and self._bodies == 0:
            self._quiet.set()

    async def _fetch(self, ticket: int) -> AsyncIterator[bytes]:
        # Its own stream, so a large download never holds up the shared one.
        stream: ClientStream | None = None
        try:
            stream = await self._channel.open(FETCH_BODY)
            stream.write(mux_pb2.BodyTicket(ticket=ticket).SerializeToString())
            stream.end()
            while (payload := await stream.read()) is not None:
                yield _payload_data(payload)
            status = await stream.status()
            if not status.ok:
                raise InvocationFailed(status.message or "body fetch failed", status.code)
        except RpcError as exc:
            raise InvocationFailed(exc.message or "body fetch failed", exc.code) from exc
        finally:
            if stream is not None:
                stream.cancel()
            self._bodies -= 1
            self._check_quiet()

    # StreamListener: called from the connection's read callback.

    def headers(self) -> None:
        self._opened.set()

    def message(self, payload: bytes) -> None:
        try:
            reply = mux_pb2.MuxFrame.FromString(payload)
        except DecodeError:
            if self._stream is not None:
                self._stream.cancel("undecodable frame")
            self._end(InvocationFailed("peer sent an undecodable frame", "INTERNAL"))
            return
        self._answered = True
        answer = self._pending.get(reply.call_id)
        if answer is not None and not answer.done():
            answer.set_result(reply)

    def closed(self, status: Status) -> None:
        failure: Exception
        if status.code == "UNIMPLEMENTED" and not self._answered:
            failure = MuxUnsupported(status.message or "unimplemented")
        elif status.ok:
            failure = InvocationFailed("peer closed the stream", "UNAVAILABLE")
        else:
            failure = InvocationFailed(status.message or status.code.lower(), status.code)
        self._end(failure)

    def _end(self, failure: Exception) -> None:
        # Whatever ends the stream (its end, an error, close(), a defect) fails
        # every pending call at once rather than leaving it to its deadline.
        self.broken = True
        self._opened.set()
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(failure)

    async def close(self) -> None:
        self._end(InvocationFailed("transport closed", "UNAVAILABLE"))
        self._opener.cancel()
        if self._stream is not None:
            self._stream.cancel()


def _payload_data(payload: bytes) -> bytes:
    data: bytes = common_pb2.StreamPayload.FromString(payload).data
    return data


def _deadline_exceeded() -> InvocationFailed:
    # Dapr's words for a call past its deadline.
    return InvocationFailed("context deadline exceeded", "DEADLINE_EXCEEDED")


class _Deadline:
    """The bound of one multiplexed call, fired by a loop timer.

    Once the frame is sent the call only waits for its answer, so the deadline
    fails the answer. Before that (waiting for the stream to open, or inside a
    write held up by flow control) it cancels the calling task, as
    ``asyncio.timeout`` would, and ``invoke`` turns that into the same error."""

    __slots__ = ("_answer", "_cancelled", "_cancelling", "_sending", "_task")

    def __init__(
        self, answer: asyncio.Future[mux_pb2.MuxFrame], loop: asyncio.AbstractEventLoop
    ) -> None:
        task = asyncio.current_task(loop)
        assert task is not None
        self._answer = answer
        self._task = task
        self._cancelling = task.cancelling()
        self._sending = True
        self._cancelled = False

    def sent(self) -> None:
        self._sending = False

    def __call__(self) -> None:
        if self._answer.done():
            return
        if self._sending:
            self._cancelled = True
            self._task.cancel()
        else:
            self._answer.set_exception(_deadline_exceeded())

    def interrupted(self) -> bool:
        """True when a cancellation came from this deadline alone (and is now undone)."""
        return self._cancelled and self._task.uncancel() <= self._cancelling
