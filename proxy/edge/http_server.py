"""The HTTP/1.1 API server: asyncio streams driving an ``h11.Connection``.

Framing and limits are enforced here, before any handler runs, so a malformed
or oversized request never reaches the pipeline (and so never the app):
CL+TE together, TE on HTTP/1.0, duplicate Host, bad chunking -> 400 and close;
an over-long request line -> 414; oversized headers -> 431; a body over the
limit -> 413 and close; slow headers -> connection closed.

The server knows no API's error wording: the wiring gives it a ``Reject`` that
turns a status and a reason into the body of an error answer (Dapr's JSON on
the API port). After an error answer it closes the way Go's server and nginx
do (a lingering close), so the client reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import h11

from proxy.core.body import CHUNK_SIZE, EMPTY, Body, BodyReadError, BodyTooLarge, close_body
from proxy.core.errors import TetherError
from proxy.edge.framing import head_problem, may_still_send

log = logging.getLogger("tether.http")

Headers = list[tuple[bytes, bytes]]
# Reason phrases as daprd (Go's net/http) writes them; clients such as the Dapr SDK show them.
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class ErrorBody(Protocol):
    """What an error answer carries; its wording is the caller's."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> bytes: ...
    @property
    def content_type(self) -> bytes: ...


# Turns a status and a plain reason into an error answer's body. The server uses it
# for requests it refuses itself (400, 413, 414, 431, 502) and for a handler that
# raised (500, with a reason that leaks nothing).
Reject = Callable[[int, str], ErrorBody]


@dataclass(frozen=True, slots=True)
class PlainError:
    status: int
    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"


def plain_reject(status: int, reason: str) -> PlainError:
    """The default: a one-line text body, as Go's net/http writes for a bad request."""
    phrase = _REASONS.get(status, b"").decode()
    return PlainError(status, f"{status} {phrase}: {reason}".encode())


@dataclass(slots=True)
class HttpRequest:
    verb: str
    target: str
    headers: Headers
    body: Body
    # Set when reading a streamed body failed; the edge answers 413/400 for it.
    body_error: Exception | None = None


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Headers
    body: Body = field(default_factory=Body)

    @classmethod
    def of(cls, error: ErrorBody) -> HttpResponse:
        return cls(error.status, [(b"content-type", error.content_type)], Body(error.body))


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Called after each response: request, status, latency (ms), body bytes in, body bytes out.
Observer = Callable[[HttpRequest, int, float, int, int], None]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 4 * 1024
    max_body_size: int = 4 * 1024 * 1024
    # Go's http.Server with only ReadHeaderTimeout set (daprd) also uses it as
    # the keep-alive idle timeout; we do the same.
    header_timeout: float = 10.0
    # Bodies up to this size (declared, or chunked and ending within it) are
    # read whole before the handler runs, so they are checked before anything
    # is forwarded and can be sent in one message (and replayed); larger ones
    # stream through in CHUNK_SIZE pieces.
    replay_buffer_size: int = 4 * 1024 * 1024
    # After an error answer the client may still be sending (200 KB of headers, a
    # body over the limit). Closing with unread input makes the kernel send a reset,
    # which can destroy the answer before the client reads it; so we half-close and
    # read and drop what still comes, up to these bounds, like nginx's lingering_close.
    linger_time: float = 2.0
    linger_bytes: int = 16 * 1024 * 1024


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        limits: HttpLimits,
        observe: Observer | None = None,
        reject: Reject = plain_reject,
    ) -> None:
        self._handler = handler
        self._observe = observe
        self._limits = limits
        self._error_body = reject
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._busy = 0
        self._idle_event = asyncio.Event()
        self._idle_event.set()

    async def listen(self, hosts: list[str], port: int) -> None:
        for host in hosts:
            server = await asyncio.start_server(self._serve, host, port, limit=CHUNK_SIZE)
            self._servers.append(server)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace``), close the rest."""
        for server in self._servers:
            server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle_event.wait(), grace)
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)
        try:
            while await self._serve_one(conn, reader, writer):
                conn.start_next_cycle()
            if may_still_send(conn):
                await self._linger(reader, writer)
        except (OSError, h11.ProtocolError, BodyReadError, TetherError) as exc:
            # The client went away, or the upstream broke mid-response after the
            # status line was sent: all that is left to do is close.
            log.debug("connection closed: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close after our answer, then drop what the client still sends (bounded)."""
        if writer.is_closing() or not writer.can_write_eof():
            return
        await writer.drain()
        writer.write_eof()
        budget = self._limits.linger_bytes
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._limits.linger_time):
                while budget > 0:
                    data = await reader.read(min(CHUNK_SIZE, budget))
                    if not data:
                        return  # the client has read our answer and closed
                    budget -= len(data)

    async def _serve_one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Handle one request; True when the connection can carry another."""
        seen = bytearray()
        try:
            async with asyncio.timeout(self._limits.header_timeout):
                event = await _next_event(conn, reader, seen)
        except TimeoutError:
            return False
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431 and b"\n" not in seen[: self._limits.max_header_bytes]:
                status = 414  # the request line alone is over the limit
            await self._reject(conn, writer, status, str(exc) or "malformed request")
            return False
        if not isinstance(event, h11.Request):
            return False  # ConnectionClosed
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, problem = head_problem(event, seen, self._limits.max_header_bytes)
        if status:
            await self._reject(conn, writer, status, problem)
            return False
        request = HttpRequest(
            event.method.decode("ascii"), event.target.decode("latin-1"), list(event.headers), EMPTY
        )
        self._busy += 1
        self._idle_event.clear()
        try:
            early = await self._attach_body(conn, reader, writer, request)
            if early is not None:
                await self._reject(conn, writer, early[0], early[1])
                return False
            try:
                response = await self._handler(request)
            except Exception:
                log.exception("unhandled error serving %s %s", request.verb, request.target)
                response = HttpResponse.of(self._error_body(500, "internal error"))
            if request.body_error is not None:
                await close_body(response.body)
                status = 413 if isinstance(request.body_error, BodyTooLarge) else 400
                await self._reject(conn, writer, status, str(request.body_error))
                return False
            sent = await self._respond(conn, writer, response)
            if self._observe is not None:
                body = request.body
                received = len(body.head) if body.complete else (body.length or 0)
                latency_ms = (loop.time() - started) * 1000
                self._observe(request, response.status, latency_ms, received, sent)
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle_event.set()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _attach_body(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: HttpRequest,
    ) -> tuple[int, str] | None:
        length: int | None = None
        chunked = False
        for name, value in request.headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:
            # No body: h11 still owes us the EndOfMessage that completes the request.
            if not isinstance(conn.next_event(), h11.EndOfMessage):
                return 400, "unexpected data after the request head"
            return None
        limit = self._limits.max_body_size
        if length is not None and length > limit:
            return 413, f"request body of {length} bytes exceeds the limit of {limit} bytes"
        if conn.they_are_waiting_for_100_continue:
            await _write(writer, conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        events = _body_events(conn, reader, limit)
        replay = self._limits.replay_buffer_size
        if length is not None and length > replay:
            request.body = Body(b"", _recording(request, events), length)
            return None
        # Read up to the replay buffer before forwarding anything, so a body
        # that is malformed or too large within it never reaches the app.
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in events:
                parts.append(chunk)
                size += len(chunk)
                if size > replay:  # chunked and large: stream the rest
                    request.body = Body(b"".join(parts), _recording(request, events), None)
                    return None
        except BodyTooLarge as exc:
            return 413, str(exc)
        except h11.RemoteProtocolError as exc:
            return 400, str(exc)
        request.body = Body(b"".join(parts), None, size)
        return None

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: HttpResponse
    ) -> int:
        """Send the response; the number of body bytes sent."""
        headers = response.headers
        body = response.body
        if body.complete and not any(name == b"content-length" for name, _ in headers):
            headers = [*headers, (b"content-length", str(len(body.head)).encode())]
        try:
            head = conn.send(
                h11.Response(
                    status_code=response.status,
                    headers=headers,
                    reason=_REASONS.get(response.status, b""),
                )
            )
        except h11.LocalProtocolError as exc:
            await close_body(body)
            await self._reject(conn, writer, 502, f"invalid response from upstream: {exc}")
            return 0
        if body.complete:
            parts = [head]
            if body.head:
                parts.append(conn.send(h11.Data(data=body.head)))
            parts.append(conn.send(h11.EndOfMessage()))
            await _write(writer, b"".join(p for p in parts if p))
            return len(body.head)
        await _write(writer, head)
        sent = 0
        try:
            async for chunk in body.chunks():
                await _write(writer, conn.send(h11.Data(data=chunk)))
                sent += len(chunk)
            await _write(writer, conn.send(h11.EndOfMessage()))
        finally:
            await close_body(body)
        return sent

    async def _reject(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, message: str
    ) -> None:
        """Answer an error and mark the connection for closing."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        error = self._error_body(status, message)
        headers = [
            (b"content-type", error.content_type),
            (b"content-length", str(len(error.body)).encode()),
            (b"connection", b"close"),
        ]
        with contextlib.suppress(h11.ProtocolError):
            data = conn.send(
                h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))
            )
            data += conn.send(h11.Data(data=error.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            await _write(writer, data)


async def _next_event(
    conn: h11.Connection, reader: asyncio.StreamReader, seen: bytearray | None = None
) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(CHUNK_SIZE)
            if seen is not None and len(seen) < CHUNK_SIZE:
                seen += data
            conn.receive_data(data)
            continue
        if event is h11.PAUSED:
            raise h11.RemoteProtocolError("connection paused")
        return event  # type: ignore[return-value]


async def _body_events(
    conn: h11.Connection, reader: asyncio.StreamReader, limit: int
) -> AsyncIterator[bytes]:
    size = 0
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise BodyTooLarge(limit)
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise h11.RemoteProtocolError("connection closed in the middle of the request body")


async def _recording(request: HttpRequest, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass chunks through; remember why the body broke so the edge can answer for it."""
    try:
        async for chunk in chunks:
            yield chunk
    except (h11.RemoteProtocolError, BodyTooLarge, OSError) as exc:
        request.body_error = exc
        raise BodyReadError(str(exc)) from exc


async def _write(writer: asyncio.StreamWriter, data: bytes | None) -> None:
    if data:
        writer.write(data)
        await writer.drain()
