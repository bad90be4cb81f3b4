"""Caller side of tether's multiplexed transport: one ``Connect`` stream per
peer channel, calls matched to answers by ``call_id``.

A pending call always ends: with its answer, with the stream's failure when the
stream ends or breaks, or with DEADLINE_EXCEEDED when its bound passes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import grpc

from proxy.core.body import Body
from proxy.core.errors import InvocationFailed
from proxy.core.grpc_status import grpc_code_name
from proxy.hop.wire import MUX_CALL_TIMEOUT
from proxy.protos import internals_pb2, mux_pb2


class MuxUnsupported(Exception):
    """The peer does not serve tether's Multiplex service (e.g. it is daprd)."""


class MuxConnection:
    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self._call = stub.Connect()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[mux_pb2.MuxFrame]] = {}
        self._write_lock = asyncio.Lock()
        self._answered = False
        # Set once the peer has accepted the stream (or the stream is over).
        self._opened = asyncio.Event()
        self.broken = False
        self._reader = asyncio.get_running_loop().create_task(self._read_answers())

    async def invoke(
        self,
        request: internals_pb2.InternalInvokeRequest,
        data: bytes,
        timeout: float | None = MUX_CALL_TIMEOUT,
    ) -> tuple[internals_pb2.InternalInvokeResponse, Body]:
        """Send one call; return the response head and its body.

        ``timeout`` bounds the wait for the answer (None: the caller bounds it,
        e.g. with a resiliency timeout). Raises MuxUnsupported (nothing was
        processed; use another transport) or InvocationFailed.
        """
        if self.broken:
            raise InvocationFailed("transport closed", "UNAVAILABLE")
        call_id = next(self._ids)
        frame = mux_pb2.MuxFrame(call_id=call_id)
        frame.request.CopyFrom(request)
        frame.request.message.data.value = data
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[mux_pb2.MuxFrame] = loop.create_future()
        # Registered before anything awaits, so the reader's failure reaches it.
        self._pending[call_id] = answer
        # One timer per call, not an asyncio.timeout scope (several times the cost).
        deadline: _Deadline | None = None
        timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            deadline = _Deadline(answer)
            timer = loop.call_later(timeout, deadline)
        try:
            if not self._opened.is_set():
                await self._opened.wait()
            if not answer.done():
                try:
                    async with self._write_lock:
                        await self._call.write(frame)
                except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                    pass  # the stream failed under the write; the reader reports why
            if deadline is not None:
                deadline.sent()
            reply = await answer
        except asyncio.CancelledError:
            if deadline is not None and deadline.interrupted():
                raise _deadline_exceeded() from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(call_id, None)
        if reply.HasField("error"):
            raise InvocationFailed(reply.error.message, grpc_code_name(reply.error.code))
        response = reply.response
        head = response.message.data.value
        rest = self._fetch(reply.body_ticket) if reply.body_ticket else None
        return response, Body(head, rest)

    async def _fetch(self, ticket: int) -> AsyncIterator[bytes]:
        call = self._stub.FetchBody(mux_pb2.BodyTicket(ticket=ticket))
        try:
            async for payload in call:
                yield payload.data
        except grpc.aio.AioRpcError as exc:
            raise InvocationFailed(exc.details() or "body fetch failed", exc.code().name) from exc
        finally:
            call.cancel()

    async def _read_answers(self) -> None:
        # Whatever ends this loop (EOF, an error, close(), a defect) fails every
        # pending call at once rather than leaving it to its deadline.
        failure: Exception = InvocationFailed("transport closed", "UNAVAILABLE")
        try:
            # No frame is written before the peer accepts the stream: a write into a
            # stream the peer is refusing (daprd: UNIMPLEMENTED) races in grpc core,
            # which then reports INTERNAL and hides that the peer lacks the service.
            # (tether's MuxService sends its headers at once for this.)
            await self._call.initial_metadata()
            self._opened.set()
            while True:
                reply = await self._call.read()
                if reply is grpc.aio.EOF:
                    failure = InvocationFailed("peer closed the stream", "UNAVAILABLE")
                    return
                self._answered = True
                answer = self._pending.get(reply.call_id)
                if answer is not None and not answer.done():
                    answer.set_result(reply)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED and not self._answered:
                failure = MuxUnsupported(exc.details() or "unimplemented")
            else:
                failure = InvocationFailed(exc.details() or code.name.lower(), code.name)
        finally:
            self.broken = True
            self._opened.set()
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(failure)

    async def close(self) -> None:
        self.broken = True
        self._call.cancel()
        self._reader.cancel()


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

    def __init__(self, answer: asyncio.Future[mux_pb2.MuxFrame]) -> None:
        task = asyncio.current_task()
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
