"""Callee side of tether's multiplexed transport (``proxy/protos/mux.proto``):
one long-lived ``Connect`` stream per caller carries many calls at once, each
answered as soon as the app does. Bodies that do not fit in one frame are
parked under a ticket and streamed by ``FetchBody`` on their own HTTP/2 stream,
so a large download never blocks the shared stream."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from proxy.core.body import Body, close_body
from proxy.core.errors import AppChannelError, CallRejected
from proxy.core.grpc_status import GRPC_CODE_NAMES, grpc_code_name
from proxy.grpcwire.handlers import RpcMethod, stream_stream, unary_stream
from proxy.grpcwire.server_call import ServerCall, StreamClosed
from proxy.hop.callee import Callee, fill_response_head
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.mux_quota import CallLimits, MuxQuota
from proxy.hop.rpc_methods import MUX_CALL, MUX_CONNECT, MUX_FETCH_BODY
from proxy.hop.wire import INLINE_LIMIT, abort, peer_identity
from proxy.protos import common_pb2, internals_pb2, mux_pb2

if TYPE_CHECKING:
    # Types only: prometheus_client loads when metrics are on, not in every sidecar.
    from proxy.observability.metrics import Metrics

log = logging.getLogger("tether.mux")

# A parked body not fetched by then is dropped (and its app connection freed).
TICKET_TTL = 30.0
# Each holds an app connection open: one caller may park this many, all callers this
# many (--max-parked-bodies sets the second, and an eighth of it the first).
MAX_PARKED_PER_CALLER = 128
MAX_PARKED = 1024


class ParkedBodies:
    """Response bodies waiting for the caller's FetchBody, each for one caller only."""

    def __init__(
        self,
        ttl: float = TICKET_TTL,
        per_caller: int = MAX_PARKED_PER_CALLER,
        total: int = MAX_PARKED,
    ) -> None:
        self._ttl = ttl
        self._per_caller = per_caller
        self._total = total
        self._parked: dict[int, tuple[CallerIdentity | None, Body, asyncio.TimerHandle]] = {}
        self._owned: dict[CallerIdentity | None, int] = {}

    def park(self, owner: CallerIdentity | None, body: Body) -> int:
        """A ticket for ``body``; CallRejected RESOURCE_EXHAUSTED when the caller (or
        everyone) already has too many waiting."""
        if len(self._parked) >= self._total or self._owned.get(owner, 0) >= self._per_caller:
            raise CallRejected(
                "RESOURCE_EXHAUSTED", "too many response bodies waiting to be fetched"
            )
        ticket = secrets.randbits(63) | 1
        handle = asyncio.get_running_loop().call_later(self._ttl, self._expire, ticket)
        self._parked[ticket] = (owner, body, handle)
        self._owned[owner] = self._owned.get(owner, 0) + 1
        return ticket

    def take(self, ticket: int, owner: CallerIdentity | None) -> Body | None:
        parked = self._parked.get(ticket)
        if parked is None or parked[0] != owner:
            return None
        self._forget(ticket)
        parked[2].cancel()
        return parked[1]

    def _forget(self, ticket: int) -> tuple[CallerIdentity | None, Body, asyncio.TimerHandle]:
        parked = self._parked.pop(ticket)
        left = self._owned[parked[0]] - 1
        if left:
            self._owned[parked[0]] = left
        else:
            del self._owned[parked[0]]
        return parked

    def _expire(self, ticket: int) -> None:
        if ticket in self._parked:
            body = self._forget(ticket)[1]
            asyncio.get_running_loop().create_task(close_body(body))

    async def close(self) -> None:
        parked, self._parked = self._parked, {}
        self._owned = {}
        for _, body, handle in parked.values():
            handle.cancel()
            await close_body(body)


async def read_inline(body: Body, limit: int) -> tuple[bytes, bool]:
    """Read up to ``limit`` bytes; True when that was the whole body."""
    if body.rest is None:
        return body.head, True
    parts = [body.head] if body.head else []
    size = len(body.head)
    async for chunk in body.rest:
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            body.head = b""
            return b"".join(parts), False
    body.rest = None
    return b"".join(parts), True


class MuxService:
    def __init__(
        self,
        callee: Callee,
        parked: ParkedBodies,
        metrics: Metrics | None = None,
        limits: CallLimits | None = None,
    ) -> None:
        self._metrics = metrics
        self._quota = MuxQuota(limits or CallLimits())
        self._callee = callee
        self._parked = parked
        # Each open Connect handler, with the calls it is answering.
        self._streams: dict[asyncio.Task[object], set[asyncio.Task[None]]] = {}
        self._draining = False

    def methods(self) -> dict[str, RpcMethod]:
        """Its methods for the internal server, by full path."""
        return {
            MUX_CONNECT: stream_stream(
                self.Connect, mux_pb2.MuxFrame.FromString, mux_pb2.MuxFrame.SerializeToString
            ),
            MUX_FETCH_BODY: unary_stream(
                self.FetchBody,
                mux_pb2.BodyTicket.FromString,
                common_pb2.StreamPayload.SerializeToString,
            ),
        }

    async def Connect(
        self,
        request_iterator: AsyncIterator[mux_pb2.MuxFrame],
        context: ServerCall,
    ) -> None:
        caller = peer_identity(context)
        # Headers at once: the caller writes no frame before it knows we accept the stream.
        context.send_initial_metadata(())
        in_flight: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        handler = asyncio.current_task()
        assert handler is not None
        self._streams[handler] = in_flight

        async def answer(frame: mux_pb2.MuxFrame) -> None:
            reply = await self._answer(frame, caller)
            try:
                # Whole messages are queued at once: concurrent answers never interleave.
                await context.write(reply)
            except StreamClosed:
                log.debug("stream gone before call %d was answered", frame.call_id)

        quota = self._quota
        # Keys of their own kind: a plaintext caller (no identity) is its connection.
        # Tuples of strings and ints: hashed in C on every call, not by a dataclass.
        connection = ("connection", id(context.connection))
        peer: tuple[str, ...] | tuple[str, int] = (
            ("peer", caller.trust_domain, caller.namespace, caller.app_id)
            if caller is not None
            else ("peer", id(context.connection))
        )

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            quota.release(connection, peer)

        try:
            async for frame in request_iterator:
                if not quota.try_acquire(connection, peer):
                    # Full: read no further frames until a call ends (backpressure).
                    await quota.acquire(connection, peer)
                task = loop.create_task(answer(frame))
                in_flight.add(task)
                task.add_done_callback(done)
        except asyncio.CancelledError:
            if not self._draining:
                raise
            # Drained: end the stream with OK so the caller redials elsewhere
            # (a cancelled handler would hold the server's stop for the whole grace).
        finally:
            # The caller closed its side (or we are draining): finish what it asked for.
            del self._streams[handler]
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def drain(self, grace: float) -> None:
        """On shutdown: let calls in flight finish (up to ``grace``), then end every stream."""
        self._draining = True
        answering = [task for calls in self._streams.values() for task in calls]
        if answering:
            _, late = await asyncio.wait(answering, timeout=grace)
            for task in late:
                task.cancel()  # past the grace: the caller gets an error, not a hang
        for handler in list(self._streams):
            handler.cancel()

    async def _answer(
        self, frame: mux_pb2.MuxFrame, caller: CallerIdentity | None
    ) -> mux_pb2.MuxFrame:
        started = time.perf_counter()
        reply = await self._reply(frame, caller)
        if self._metrics is not None:
            status = grpc_code_name(reply.error.code) if reply.HasField("error") else "OK"
            latency_ms = (time.perf_counter() - started) * 1000
            received = len(frame.request.message.data.value)
            sent = len(reply.response.message.data.value)
            self._metrics.grpc_server(MUX_CALL, status, latency_ms, received, sent)
        return reply

    async def _reply(
        self, frame: mux_pb2.MuxFrame, caller: CallerIdentity | None
    ) -> mux_pb2.MuxFrame:
        """The answer to one frame: always one, whatever happened while handling it."""
        try:
            return await self._handle(frame, caller)
        except CallRejected as exc:
            return _error_frame(frame.call_id, exc.code, str(exc))
        except Exception as exc:
            # A defect of ours: the caller still gets Dapr's error, the log one line.
            detail = " ".join(str(exc).split())
            log.error("mux call %d could not be answered: %s", frame.call_id, detail)
            return _error_frame(frame.call_id, "INTERNAL", f"error invoking app channel: {detail}")

    async def _handle(
        self, frame: mux_pb2.MuxFrame, caller: CallerIdentity | None
    ) -> mux_pb2.MuxFrame:
        request = frame.request
        response = await self._callee.serve(
            request, Body(request.message.data.value), caller, rpc=MUX_CALL
        )
        try:
            data, whole = await read_inline(response.body, INLINE_LIMIT)
        except AppChannelError as exc:
            await close_body(response.body)
            raise CallRejected("INTERNAL", f"error invoking app channel: {exc}") from exc
        reply = mux_pb2.MuxFrame(call_id=frame.call_id)
        fill_response_head(reply.response, response)
        reply.response.message.data.value = data
        if not whole:
            try:
                reply.body_ticket = self._parked.park(caller, response.body)
            except CallRejected:
                await close_body(response.body)
                raise
        return reply

    async def FetchBody(
        self, request: mux_pb2.BodyTicket, context: ServerCall
    ) -> AsyncIterator[common_pb2.StreamPayload]:
        body = self._parked.take(request.ticket, peer_identity(context))
        if body is None:
            abort(context, "NOT_FOUND", "no such body ticket (expired or not yours)")
        seq = 0
        try:
            async for chunk in body.chunks():
                yield common_pb2.StreamPayload(data=chunk, seq=seq)
                seq += 1
        except AppChannelError as exc:
            abort(context, "INTERNAL", f"error invoking app channel: {exc}")
        finally:
            await close_body(body)


def _error_frame(call_id: int, code: str, message: str) -> mux_pb2.MuxFrame:
    """Dapr's error shape: a gRPC code and a message, in place of a response."""
    status = internals_pb2.Status(code=GRPC_CODE_NAMES.index(code), message=message)
    return mux_pb2.MuxFrame(call_id=call_id, error=status)
