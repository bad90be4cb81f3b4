"""One client connection of the HTTP/1.1 server: an ``asyncio.Protocol`` driving an
``h11.Connection``.

Bytes are fed to h11 in ``data_received``; when a whole request is in hand (the head,
and the body up to the replay buffer) one task runs the handler and writes the answer,
then the next request (pipelined ones already sit in h11's buffer) is parsed at once.
No task or future waits on the socket between requests: an idle connection costs a
timer that is re-armed lazily, and reads are paused instead of buffered when nobody
takes the bytes (a streamed body the handler has not asked for yet, pipelined
requests behind one in progress). Writes of streamed answers wait on the transport's
own flow control (``pause_writing``), so a slow reader holds the answer's producer,
not our memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import h11

from proxy.core.body import CHUNK_SIZE, EMPTY, Body, BodyReadError, BodyTooLarge, close_body
from proxy.core.errors import TetherError
from proxy.core.flow import FlowProtocol
from proxy.edge.body_feed import BodyFeed
from proxy.edge.body_pace import BodyTimedOut
from proxy.edge.framing import body_framing, head_problem, may_still_send
from proxy.edge.http_answer import body_piece, error_answer, response_head, whole_response
from proxy.edge.http_body import RequestBody
from proxy.edge.http_messages import HttpRequest, HttpResponse
from proxy.edge.http_site import Site
from proxy.edge.lazy_timer import LazyTimer

log = logging.getLogger("tether.http")

# What the connection is doing; decides where received bytes go.
_HEAD = 0  # waiting for a request head (idle keep-alive included): header timer armed
_BODY = 1  # reading a body up to the replay buffer before the handler runs
_BUSY = 2  # the handler runs (a large body may still be streaming in)
_LINGER = 3  # answered an error and half-closed: dropping what the client still sends
_CLOSED = 4


class ServerConnection(FlowProtocol):
    """One client connection; see the module docstring for how bytes flow."""

    def __init__(self, site: Site) -> None:
        super().__init__()
        self._site = site
        self._conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=site.limits.max_header_bytes
        )
        self._phase = _HEAD
        # Bytes received while waiting for the head (up to CHUNK_SIZE), for the
        # checks h11 does not make (folded lines, request line vs headers).
        self._seen = b""
        # The header timeout (idle keep-alive included), then the lingering close's bound.
        self._timer = LazyTimer(self._loop, self.close)
        self._eof = False
        # Body bytes to their reader, and the 408 rules while waiting (see body_feed).
        self._feed = BodyFeed(self._loop, site.limits.body_pace, self._too_slow)
        self._request: HttpRequest | None = None
        self._task: asyncio.Task[None] | None = None
        self._parts: list[bytes] = []
        self._size = 0
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
        return self._phase == _HEAD and not self._seen and self._task is None

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _LINGER:
            self._linger_budget -= len(data)
            if self._linger_budget <= 0:
                self.close()
            return
        if phase == _CLOSED:
            return
        conn = self._conn
        conn.receive_data(data)
        if phase == _HEAD:
            seen = self._seen
            if not seen:
                self._seen = data  # the usual case: the whole head in one read, no copy
            elif len(seen) < CHUNK_SIZE:
                self._seen = seen + data
            self._advance_head()
        elif phase == _BODY:
            self._feed.arrived(len(data))
            self._advance_body()
        elif conn.their_state is h11.SEND_BODY:
            if not self._feed.arrived(len(data)):
                # Nobody reads the body now (or the reader is already woken: libuv reads
                # a socket up to 32 times per loop turn): leave the rest in the kernel.
                self._pause_reading()
        else:
            # Pipelined requests behind the one in progress: hold a little, then
            # leave the rest in the kernel until this one is answered.
            if len(self._seen) < CHUNK_SIZE:
                self._seen += data
            self._held += len(data)
            if self._held > CHUNK_SIZE:
                self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        if self._phase >= _LINGER:
            self.close()
            return False
        self._conn.receive_data(b"")
        if self._phase == _HEAD:
            self._advance_head()
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

    def _advance_head(self) -> None:
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            limit = self._site.limits.max_header_bytes
            if status == 431 and b"\n" not in self._seen[:limit]:
                status = 414  # the request line alone is over the limit
            self._reject(status, str(exc) or "malformed request")
            return
        if event is h11.NEED_DATA:
            return
        if type(event) is h11.Request:
            self._on_head(event)
        else:
            self.close()  # ConnectionClosed: the client is done

    def _on_head(self, event: h11.Request) -> None:
        self._timer.clear()
        limits = self._site.limits
        status, problem = head_problem(event, self._seen, limits.max_header_bytes)
        self._seen = b""
        if status:
            self._reject(status, problem)
            return
        self._started = self._loop.time()
        request = HttpRequest(
            event.method.decode("ascii"), event.target.decode("latin-1"), list(event.headers), EMPTY
        )
        self._request = request
        self._counted = True
        self._site.begin_one()
        length, chunked = body_framing(request.headers)
        conn = self._conn
        if length is None and not chunked:
            # No body: h11 still owes us the EndOfMessage that completes the request.
            if type(conn.next_event()) is not h11.EndOfMessage:
                self._reject(400, "unexpected data after the request head")
            else:
                self._start(request)
            return
        limit = limits.max_body_size
        if length is not None and length > limit:
            self._reject(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
            return
        if conn.they_are_waiting_for_100_continue:
            self._write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        if length is not None and length > limits.replay_buffer_size:
            request.body = Body(b"", RequestBody(self, request, limit), length)
            self._start(request)
            return
        # Read up to the replay buffer before forwarding anything, so a body
        # that is malformed or too large within it never reaches the app.
        self._phase = _BODY
        self._parts = []
        self._size = 0
        self._advance_body()

    def _advance_body(self) -> None:
        conn = self._conn
        request = self._request
        assert request is not None
        limits = self._site.limits
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    self._feed.expect()
                    return
                kind = type(event)
                if kind is h11.Data:
                    data = event.data  # type: ignore[union-attr]
                    self._parts.append(data)
                    self._size += len(data)
                    if self._size > limits.max_body_size:
                        self._reject(413, str(BodyTooLarge(limits.max_body_size)))
                        return
                    if self._size > limits.replay_buffer_size:  # chunked and large
                        stream = RequestBody(self, request, limits.max_body_size, self._size)
                        request.body = Body(b"".join(self._parts), stream, None)
                        break
                elif kind is h11.EndOfMessage:
                    request.body = Body(b"".join(self._parts), None, self._size)
                    break
                else:
                    raise h11.RemoteProtocolError(
                        "connection closed in the middle of the request body"
                    )
        except h11.RemoteProtocolError as exc:
            self._reject(400, str(exc))
            return
        self._parts = []
        self._feed.pause()
        self._start(request)

    async def next_body_event(self) -> h11.Data | None:
        """The next piece of a streamed request body (None at its end), waiting for
        the client as needed; reading stays paused while nobody asks."""
        if self._phase == _CLOSED:
            raise ConnectionResetError("the client connection was lost")
        return await self._feed.next_event(self._conn, self._resume_reading)

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
        except (OSError, h11.ProtocolError, BodyReadError, TetherError) as exc:
            # The client went away, or the upstream broke mid-response after the
            # status line was sent: all that is left to do is close.
            log.debug("connection closed: %s", exc)
            self.close()
            return
        finally:
            self._task = None
            self._release()
        conn = self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            self._next_cycle()
        else:
            self._end()

    def _head_of(self, response: HttpResponse) -> bytes | None:
        """The response head, or None when the response is not valid HTTP (answered 502)."""
        try:
            return response_head(self._conn, response)
        except h11.LocalProtocolError as exc:
            self._reject(502, f"invalid response from upstream: {exc}")
            return None

    def _respond_whole(self, response: HttpResponse) -> int:
        head = self._head_of(response)
        if head is None:
            return -1
        data = response.body.head
        self._writable().writelines(whole_response(self._conn, head, data))
        return len(data)

    async def _respond_streamed(self, response: HttpResponse) -> int:
        body = response.body
        head = self._head_of(response)
        if head is None:
            await close_body(body)
            return -1
        conn = self._conn
        sent = 0
        try:
            self._write(head)
            async for chunk in body.chunks():
                self._writable().writelines(body_piece(conn, chunk))
                sent += len(chunk)
                if self._write_paused:
                    await self._drain()
            self._write(conn.send(h11.EndOfMessage()))
        finally:
            await close_body(body)
        return sent

    def _reject(self, status: int, message: str) -> None:
        """Answer an error, then end the connection (lingering if the client may still send)."""
        conn = self._conn
        transport = self._transport
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and transport is not None:
            with contextlib.suppress(h11.ProtocolError):
                data = error_answer(conn, self._site.reject(status, message))
                if not transport.is_closing():
                    transport.write(data)
        self._release()
        self._end()

    # -- connection life

    def _next_cycle(self) -> None:
        self._conn.start_next_cycle()
        self._feed.reset()
        self._phase = _HEAD
        self._request = None
        self._timer.set(self._site.limits.header_timeout)
        if not self._eof:
            self._resume_reading()
        self._advance_head()  # pipelined requests (or the client's EOF) may be in hand

    def _end(self) -> None:
        """Close; after an answer the client may not have read whole, linger first."""
        transport = self._transport
        if self._phase >= _LINGER or transport is None:
            return
        if (
            not may_still_send(self._conn)
            or self._eof
            or transport.is_closing()
            or not transport.can_write_eof()
        ):
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
