"""Pumping one relayed call, shared by both sidecars: the caller's messages into an
outbound stream (kept for a replay while they fit), the stream's answer back to the
caller, and the call's end. Flow control holds both ways: a message is read from
one side only once the other side took the previous one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from proxy.core.grpc_status import GRPC_CODE_NAMES
from proxy.grpcproxy import metadata as md
from proxy.grpcwire.client import ClientStream, RpcError, Status
from proxy.grpcwire.server_call import AbortError, ServerCall
from proxy.observability.tracer import SpanHandle


@dataclass(slots=True)
class Sent:
    """Whether anything of the answer reached the caller (then no retry may follow)."""

    anything: bool = False


class Requests:
    """The caller's request messages, read once from its call and kept (up to
    ``limit`` bytes in all; 0: none) so that a retry can send them again. Once the
    answer began to reach the caller (``sent``) nothing is kept: no retry may follow."""

    def __init__(self, call: ServerCall, limit: int, sent: Sent | None = None) -> None:
        self._call = call
        self._limit = limit
        self._sent = sent
        self._kept: list[bytes] = []
        self._size = 0
        self.replayable = True  # every message read so far is kept
        self.ended = False  # the caller half-closed

    def send_ready(self, stream: ClientStream) -> bool:
        """Send at once (with the stream's headers, in one write) the messages kept for
        a retry and those already received, and the half-close if the caller made it.
        True when nothing is left to feed."""
        call = self._call
        try:
            for payload in self._kept:
                stream.write(payload)
            for message in call.take_ready():
                self._keep(message)
                stream.write(message)
            if call.client_done:
                self.ended = True
                stream.end()
                return True
        except RpcError:
            return True  # the stream is over; its status says why
        return False

    async def feed(self, stream: ClientStream) -> None:
        """After ``send_ready``: the rest as it comes, then the half-close. Ends quietly
        when the stream is over (its status says why)."""
        try:
            await stream.drain()
            while not self.ended:
                try:
                    message: bytes = await anext(self._call)
                except StopAsyncIteration:
                    self.ended = True
                    break
                self._keep(message)
                await stream.send(message)
            stream.end()
        except RpcError:
            pass

    def forget(self) -> None:
        """No other attempt will be made: keep nothing more."""
        self.replayable = False
        self._kept.clear()

    def _keep(self, payload: bytes) -> None:
        if not self.replayable:
            return
        self._size += len(payload)
        if self._size > self._limit or (self._sent is not None and self._sent.anything):
            # Too much to hold, or already answered: this call can no longer be retried.
            self.forget()
        else:
            self._kept.append(payload)


def start_feeding(requests: Requests, stream: ClientStream) -> asyncio.Task[None] | None:
    """Feed ``stream`` the caller's messages: those at hand now, the rest from a task
    (None when the caller has sent everything already, as a unary call usually has)."""
    if requests.send_ready(stream):
        return None
    return asyncio.get_running_loop().create_task(requests.feed(stream))


async def answer(stream: ClientStream, call: ServerCall, sent: Sent, *, hold: bool) -> Status:
    """Relay the answer's messages to the caller; their status once the stream ends.

    ``hold``: the response headers wait for the first message, so an answer that is
    only a (retriable) status has not reached the caller yet."""
    if not hold:
        await stream.initial_metadata()
        if stream.response_headers:
            _send_headers(stream, call, sent)
    while (payload := await stream.read()) is not None:
        _send_headers(stream, call, sent)
        await call.write(payload)
    return await stream.status()


def _send_headers(stream: ClientStream, call: ServerCall, sent: Sent) -> None:
    if not call.headers_sent:
        call.send_raw_headers(md.response_headers(stream.response_headers))
    sent.anything = True


def end(call: ServerCall, stream: ClientStream, status: Status) -> None:
    """End the caller's call as the stream ended: the app's own trailers when it sent
    them (any code, its message and trailing metadata), else the status seen here."""
    if stream.response_headers and not call.headers_sent:
        call.send_raw_headers(md.response_headers(stream.response_headers))
    code = md.status_code(stream.trailers)
    if code is not None and (code == 0) == status.ok:
        call.end_raw(md.trailers(stream.trailers))
    else:
        call.end_raw(md.status_trailers(status.code, status.message))


def stop(stream: ClientStream | None, writer: asyncio.Task[None] | None) -> None:
    """The call is over on our side (or given up): the stream is cancelled (RST_STREAM,
    so the next hop and the app see it) and its feeder stopped."""
    if stream is not None and not stream.done:
        stream.cancel()
    if writer is not None and not writer.done():
        writer.cancel()


async def settled(work: Coroutine[Any, Any, str], done: Callable[[str], None]) -> None:
    """Run a relay; ``done`` gets the gRPC code it ended with, however it ended (an
    abort's code, CANCELLED, UNKNOWN for a defect), for its metrics and span."""
    code = "UNKNOWN"
    try:
        code = await work
    except AbortError as exc:
        code = exc.code
        raise
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    finally:
        done(code)


def end_span(span: SpanHandle | None, code: str) -> None:
    if span is not None:
        number = GRPC_CODE_NAMES.index(code) if code in GRPC_CODE_NAMES else 2
        span.set_status_code(number, protocol="grpc")
        span.end()
