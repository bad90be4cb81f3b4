"""The HTTP/1.1 channel from the callee sidecar to its local app: a small pool
of keep-alive connections (``asyncio.Protocol`` objects feeding llhttp, see
``proxy.app.connection``; the request bytes and framing rules are
``proxy.app.http1_framing``'s), with bodies streamed both ways in bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.app.connection import AppConnection, EmptyResponse
from proxy.app.http1_framing import (
    CHUNKED_LINE,
    AppProtocolError,
    content_length_line,
    request_head,
)
from proxy.core.body import CHUNK_SIZE, Body
from proxy.core.errors import AppChannelError
from proxy.core.http1 import LAST_CHUNK, chunk

if TYPE_CHECKING:
    # Types only: the gRPC client loads only in sidecars whose app speaks gRPC.
    from proxy.app.grpc_channel import GrpcAppAnswer

Headers = list[tuple[bytes, bytes]]

# Methods whose requests normally carry a body; others get no Content-Length: 0.
_BODY_VERBS = frozenset({"POST", "PUT", "PATCH"})
# Go's Request.isReplayable (net/http/request.go): these methods, or a request that
# carries an idempotency key, may be sent again after the app took it and said nothing.
_REPLAYABLE_VERBS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_IDEMPOTENCY_KEYS = frozenset({b"idempotency-key", b"x-idempotency-key"})
# What breaks an exchange on a connection; whether it may be replayed is may_replay's call.
_EXCHANGE_ERRORS = (OSError, AppProtocolError, EmptyResponse)


def may_replay(verb: str, headers: Headers, *, written: bool, answered: bool) -> bool:
    """Whether a request that failed on a reused connection may go out again
    (Go's Transport.shouldRetryRequest; the caller checks that the body is in hand).

    Nothing of it reached the app: always. Otherwise only when the app answered
    nothing at all and the request is replayable, so a POST the app may have acted
    on is never run twice.
    """
    if not written:
        return True
    if answered:
        return False
    keyed = any(name.lower() in _IDEMPOTENCY_KEYS for name, _ in headers)
    return verb in _REPLAYABLE_VERBS or keyed


@dataclass(slots=True)
class AppResponse:
    """The app's answer: an HTTP status, headers and body; from a gRPC app, its gRPC
    status code, header metadata and the response's data, with ``grpc`` its answer."""

    status: int
    headers: Headers
    body: Body
    grpc: GrpcAppAnswer | None = None


class HttpAppChannel:
    """Calls the app at ``host:port``. ``max_concurrency`` < 1 means unlimited
    (``--app-max-concurrency``); a slot is held until the response body is read."""

    def __init__(self, host: str, port: int, max_concurrency: int = -1, max_idle: int = 64) -> None:
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}".encode()
        self._idle: list[AppConnection] = []
        self._max_idle = max_idle
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None

    async def call(self, verb: str, target: str, headers: Headers, body: Body) -> AppResponse:
        if self._slots is not None:
            await self._slots.acquire()
        try:
            return await self._call(verb, target, headers, body)
        except BaseException:
            self._release_slot()
            raise

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _call(self, verb: str, target: str, headers: Headers, body: Body) -> AppResponse:
        if body.complete:
            has_body = body.head or verb in _BODY_VERBS
            framing = content_length_line(len(body.head)) if has_body else b""
        elif body.length is not None:
            framing = content_length_line(body.length)
        else:
            framing = CHUNKED_LINE
        head = request_head(verb, target, self._host_header, headers, framing)
        head_request = verb == "HEAD"
        # A pooled connection may have been closed by the app while idle. As Go's
        # transport does, a request that failed on one goes out again (on the next
        # connection) only if may_replay says so and its body is in hand; a failure
        # on a fresh connection is the app's answer and is never retried.
        while self._idle:
            connection = self._idle.pop()
            if connection.is_closing():
                connection.close()  # the app closed or reset it while it sat idle
                continue
            try:
                return await self._exchange(connection, head, head_request, body)
            except _EXCHANGE_ERRORS as exc:
                replay = body.complete and may_replay(
                    verb, headers, written=connection.written, answered=connection.answered
                )
                if not replay:
                    raise AppChannelError(
                        f"error calling the app at {self.host}:{self.port}: {exc}"
                    ) from exc
        try:
            connection = await self._open()
            return await self._exchange(connection, head, head_request, body)
        except _EXCHANGE_ERRORS as exc:
            raise AppChannelError(
                f"error calling the app at {self.host}:{self.port}: {exc}"
            ) from exc

    async def _open(self) -> AppConnection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(AppConnection, self.host, self.port)
        except OSError as exc:
            raise AppChannelError(
                f"cannot connect to the app at {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        return connection

    async def _exchange(
        self, connection: AppConnection, head: bytes, head_request: bool, body: Body
    ) -> AppResponse:
        connection.begin(head_request)
        try:
            return await self._send_and_read_head(connection, head, body)
        except BaseException:
            connection.close()
            raise

    async def _send_and_read_head(
        self, connection: AppConnection, head: bytes, body: Body
    ) -> AppResponse:
        if body.complete:
            # Head and body in one write, one syscall for the common small request;
            # the body is passed through, not copied into one buffer with the head.
            connection.send(head, body.head)
        else:
            connection.send(head)
            await self._send_streamed(connection, body)
        await connection.drain()
        await connection.read_head()
        status, headers, length = connection.status, connection.headers, connection.content_length
        if connection.done:
            # A small answer is usually already in hand whole: hand it over as
            # complete and pool the connection at once, with no reader generator.
            data = connection.take_body()
            self._finish(connection, finished=True)
            return AppResponse(status, headers, Body(data, None, length))
        return AppResponse(
            status, headers, Body(connection.take_body(), self._read_body(connection), length)
        )

    @staticmethod
    async def _send_streamed(connection: AppConnection, body: Body) -> None:
        declared = body.length
        if declared is None:
            async for piece in body.chunks():
                connection.send(*chunk(piece))
                await connection.drain()
            connection.send(LAST_CHUNK)
            return
        sent = 0
        async for piece in body.chunks():
            sent += len(piece)
            if sent > declared:
                raise AppChannelError(f"the request body exceeds its Content-Length {declared}")
            connection.send(piece)
            await connection.drain()
        if sent < declared:
            raise AppChannelError(f"the request body ended short of its Content-Length {declared}")

    async def _read_body(self, connection: AppConnection) -> AsyncIterator[bytes]:
        finished = False
        try:
            while True:
                data = await connection.next_body()
                if data is None:
                    finished = True
                    return
                if len(data) <= CHUNK_SIZE:
                    yield data
                    continue
                # Several reads came at once: pass them on in pieces of the usual
                # size (the hop frames each piece as one message).
                view = memoryview(data)
                for start in range(0, len(data), CHUNK_SIZE):
                    yield bytes(view[start : start + CHUNK_SIZE])
        except (OSError, AppProtocolError) as exc:
            raise AppChannelError(f"error reading the app's response: {exc}") from exc
        finally:
            self._finish(connection, finished)

    def _finish(self, connection: AppConnection, finished: bool) -> None:
        """The response is over: free the concurrency slot, pool or close the connection."""
        self._release_slot()
        if finished and connection.reusable() and len(self._idle) < self._max_idle:
            connection.recycle()
            self._idle.append(connection)
        else:
            connection.close()

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        await asyncio.sleep(0)  # let the transports finish closing
