"""One client connection of the HTTP/1.1 server: an ``asyncio.Protocol`` feeding
llhttp (``request_reader``) and writing answers framed by ``http_answer``.

Bytes are parsed in ``data_received``; when a whole request is in hand (the head, and
the body up to the replay buffer) one task runs the handler and writes the answer,
then the next request (pipelined ones are already parsed, waiting in the reader's
queue) starts at once. No task or future waits on the socket between requests: an
idle connection costs a timer that is re-armed lazily, and reads are paused instead of
buffered when nobody takes the bytes (a streamed body the handler has not asked for
yet, pipelined requests behind one in progress). Writes of streamed answers wait on
the transport's own flow control (``pause_writing``), so a slow reader holds the
answer's producer, not our memory.
"""

from __future__ import annotations

import asyncio
import logging

from proxy.core.body import CHUNK_SIZE, EMPTY, Body, BodyReadError, BodyTooLarge, close_body
from proxy.core.errors import TetherError
from proxy.core.flow import FlowProtocol
from proxy.core.http1 import CHUNKED, LAST_CHUNK, LENGTH, NO_BODY, chunk
from proxy.edge.body_feed import BodyFeed
from proxy.edge.body_pace import BodyTimedOut
from proxy.edge.http_answer import (
    CONTINUE,
    AnswerHead,
    InvalidResponse,
    answer_head,
    error_answer,
)
from proxy.edge.http_body import RequestBody
from proxy.edge.http_messages import HttpRequest, HttpResponse
from proxy.edge.http_site import Site
from proxy.edge.lazy_timer import LazyTimer
from proxy.edge.request_reader import Incoming, RequestReader

log = logging.getLogger("tether.http")

# What the connection is doing; decides where received bytes go.
_HEAD = 0  # waiting for a request head (idle keep-alive included): header timer armed
_BODY = 1  # reading a body up to the replay buffer before the handler runs
_BUSY = 2  # the handler runs (a large body may still be streaming in)
_LINGER = 3  # answered an error and half-closed: dropping what the client still sends
_CLOSED = 4
# Answers this small go out as one buffer (a copy costs less than a second one).
_JOIN_BELOW = 16 * 1024


class ServerConnection(FlowProtocol):
    """One client connection; see the module docstring for how bytes flow."""

    def __init__(self, site: Site) -> None:
        super().__init__()
        self._site = site
        limits = site.limits
        self._reader = RequestReader(limits)
        self._phase = _HEAD
        # The header timeout (idle keep-alive included), then the lingering close's bound.
        self._timer = LazyTimer(self._loop, self.close)
        self._eof = False
        # Body bytes to their reader, and the 408 rules while waiting (see body_feed).
        self._feed = BodyFeed(self._loop, limits.body_pace, self._too_slow, limits.max_body_size)
        self._current: Incoming | None = None  # the request being answered
        self._request: HttpRequest | None = None
        self._streaming = False  # the current request's body goes on to its reader
        self._answered = False  # a response head went out for the current request
        self._keep_alive = True
        self._task: asyncio.Task[None] | None = None
        self._held = 0
        self._started = 0.0
        self._counted = False
        self._linger_budget = 0

    # -- asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._site.admit(self):
            self.close()
            return
        self._timer.set(self._site.limits.header_timeout)

    @property
    def idle(self) -> bool:
        """Kept alive between requests, with nothing of the next one received yet."""
        return self._phase == _HEAD and self._reader.idle and self._task is None

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _LINGER:
            self._linger_budget -= len(data)
            if self._linger_budget <= 0:
                self.close()
            return
        if phase == _CLOSED:
            return
        self._reader.feed(data)
        if phase == _HEAD:
            self._advance()
        elif phase == _BODY:
            self._feed.arrived(len(data))
            self._advance_body()
        elif self._streaming:
            current = self._current
            assert current is not None
            if current.complete or current.error is not None:
                self._streaming = False  # the rest is the next requests'
                self._feed.arrived(len(data))
            elif not self._feed.arrived(len(data)):
                # Nobody reads the body now (or the reader is already woken: libuv reads
                # a socket up to 32 times per loop turn): leave the rest in the kernel.
                self._pause_reading()
        else:
            # Pipelined requests behind the one in progress: hold a little, then
            # leave the rest in the kernel until this one is answered.
            self._held += len(data)
            if self._held > CHUNK_SIZE:
                self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        if self._phase >= _LINGER:
            self.close()
            return False
        self._reader.eof()
        if self._phase == _HEAD:
            self._advance()
        elif self._phase == _BODY:
            self._advance_body()
        else:
            self._feed.arrived(0)
        # Keep the write side open: a client that half-closed still reads its answer.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _CLOSED
        self._timer.cancel()
        self._site.connections.discard(self)
        super().connection_lost(exc)
        self._feed.close()

    # -- reading requests

    def _advance(self) -> None:
        """Start the next request if its head is in hand (or refuse it)."""
        reader = self._reader
        queue = reader.queue
        if not queue:
            if self._eof or reader.stopped:
                self.close()  # the client is done
            return
        current = queue[0]
        if not current.head_done and current.error is None:
            return  # more of the head to come
        queue.popleft()
        self._timer.clear()
        self._current = current
        self._answered = False
        self._keep_alive = current.keep_alive
        if not current.head_done:
            assert current.error is not None
            self._reject(*current.error)
            return
        self._started = self._loop.time()
        request = HttpRequest(
            current.method.decode("ascii"), current.url.decode("latin-1"), current.headers, EMPTY
        )
        self._request = request
        self._counted = True
        self._site.begin_one()
        length = current.length
        if length is None and not current.chunked:
            self._start(request)  # no body
            return
        if current.expect_continue and not current.size and not current.complete:
            self._write(CONTINUE)
        limits = self._site.limits
        if length is not None and length > limits.replay_buffer_size:
            request.body = Body(b"", RequestBody(self, request, limits.max_body_size), length)
            self._streaming = True
            self._start(request)
            return
        # Read up to the replay buffer before forwarding anything, so a body
        # that is malformed or too large within it never reaches the app.
        self._phase = _BODY
        self._advance_body()

    def _advance_body(self) -> None:
        current = self._current
        request = self._request
        assert current is not None and request is not None
        limits = self._site.limits
        if current.error is not None:
            self._reject(*current.error)
            return
        parts = current.parts
        if current.size > limits.replay_buffer_size:  # chunked and large
            stream = RequestBody(self, request, limits.max_body_size, current.size)
            request.body = Body(b"".join(parts), stream, None)
            self._streaming = True
        elif current.complete:
            request.body = Body(b"".join(parts), None, current.size)
        else:
            self._feed.expect()
            return
        parts.clear()
        self._feed.pause()
        self._start(request)

    async def next_body_piece(self) -> bytes | None:
        """The next piece of a streamed request body (None at its end), waiting for
        the client as needed; reading stays paused while nobody asks."""
        current = self._current
        if self._phase == _CLOSED or current is None:
            raise ConnectionResetError("the client connection was lost")
        return await self._feed.next_piece(current, self._resume_reading)

    def _too_slow(self, reason: str) -> None:
        if self._phase == _BODY:
            self._reject(408, reason)

    # -- running the handler and answering

    def _start(self, request: HttpRequest) -> None:
        self._phase = _BUSY
        self._held = 0
        self._task = self._loop.create_task(self._run(request))

    async def _run(self, request: HttpRequest) -> None:
        site = self._site
        try:
            try:
                response = await site.handler(request)
            except Exception:
                log.exception("unhandled error serving %s %s", request.verb, request.target)
                response = HttpResponse.of(site.reject(500, "internal error"))
            if request.body_error is not None:
                await close_body(response.body)
                error = request.body_error
                status = 413 if isinstance(error, BodyTooLarge) else 400
                status = 408 if isinstance(error, BodyTimedOut) else status
                self._reject(status, str(request.body_error))
                return
            if response.body.complete:
                sent = self._respond_whole(response)
            else:
                sent = await self._respond_streamed(response)
            if sent < 0:
                return  # refused as a 502; the connection is ending
            if site.observe is not None:
                body = request.body
                received = len(body.head) if body.complete else (body.length or 0)
                latency_ms = (self._loop.time() - self._started) * 1000
                site.observe(request, response.status, latency_ms, received, sent)
        except (OSError, InvalidResponse, BodyReadError, TetherError) as exc:
            # The client went away, or the upstream broke mid-response after the
            # status line was sent: all that is left to do is close.
            log.debug("connection closed: %s", exc)
            self.close()
            return
        finally:
            self._task = None
            self._release()
        current = self._current
        if self._keep_alive and current is not None and current.complete:
            self._next_cycle()
        else:
            self._end()

    def _head_of(self, response: HttpResponse) -> AnswerHead | None:
        """The response head, or None when the response is not valid HTTP (answered 502)."""
        current = self._current
        assert current is not None
        try:
            head = answer_head(
                response, current.method == b"HEAD", current.http10, self._keep_alive
            )
        except InvalidResponse as exc:
            self._reject(502, f"invalid response from upstream: {exc}")
            return None
        self._keep_alive = head.keep_alive
        self._answered = True
        return head

    def _respond_whole(self, response: HttpResponse) -> int:
        answer = self._head_of(response)
        if answer is None:
            return -1
        data = response.body.head
        transport = self._writable()
        if answer.framing == NO_BODY or not data:
            transport.write(answer.head)
            return 0
        if len(data) < _JOIN_BELOW:
            transport.write(answer.head + data)
        else:
            transport.writelines([answer.head, data])
        return len(data)

    async def _respond_streamed(self, response: HttpResponse) -> int:
        body = response.body
        answer = self._head_of(response)
        if answer is None:
            await close_body(body)
            return -1
        framing = answer.framing
        sent = 0
        try:
            self._write(answer.head)
            if framing == NO_BODY:
                return 0
            async for piece in body.chunks():
                sent += len(piece)
                if framing == CHUNKED:
                    self._writable().writelines(chunk(piece))
                else:
                    if framing == LENGTH and sent > answer.length:
                        raise InvalidResponse("more body than its Content-Length")
                    self._writable().write(piece)
                if self._write_paused:
                    await self._drain()
            if framing == CHUNKED:
                self._write(LAST_CHUNK)
            elif framing == LENGTH and sent != answer.length:
                raise InvalidResponse("less body than its Content-Length")
        finally:
            await close_body(body)
        return sent

    def _reject(self, status: int, message: str) -> None:
        """Answer an error, then end the connection (lingering if the client may still send)."""
        transport = self._transport
        if not self._answered and transport is not None and not transport.is_closing():
            current = self._current
            head_request = current is not None and current.method == b"HEAD"
            transport.write(error_answer(self._site.reject(status, message), head_request))
            self._answered = True
        self._keep_alive = False
        self._release()
        self._end()

    # -- connection life

    def _next_cycle(self) -> None:
        self._feed.reset()
        self._phase = _HEAD
        self._request = None
        self._current = None
        self._streaming = False
        self._timer.set(self._site.limits.header_timeout)
        if not self._eof:
            self._resume_reading()
        self._advance()  # pipelined requests (or the client's EOF) may be in hand

    def _end(self) -> None:
        """Close; after an answer the client may not have read whole, linger first."""
        transport = self._transport
        if self._phase >= _LINGER or transport is None:
            return
        current = self._current
        done_sending = current is not None and current.complete and self._reader.idle
        if done_sending or self._eof or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        # Half-close after our answer (the transport sends what is buffered first),
        # then drop what the client still sends, within bounds.
        transport.write_eof()
        self._phase = _LINGER
        self._linger_budget = self._site.limits.linger_bytes
        self._timer.set(self._site.limits.linger_time)
        self._resume_reading()

    def close(self) -> None:
        self._phase = _CLOSED
        self._timer.cancel()
        self._feed.close()
        if self._transport is not None:
            self._transport.close()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._site.done_one()
