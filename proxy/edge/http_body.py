"""A request body the edge streams to the handler (one larger than the replay buffer):
an async iterator of chunks that pulls from the connection only when asked."""

from __future__ import annotations

from typing import Protocol

from proxy.core.body import CHUNK_SIZE, BodyReadError, BodyTooLarge
from proxy.edge.body_feed import MalformedBody
from proxy.edge.http_messages import HttpRequest


class BodySource(Protocol):
    async def next_body_piece(self) -> bytes | None: ...


class RequestBody:
    """Chunks of the body after the part already read; when reading breaks, the reason
    is left on the request (the edge answers 413 or 400 for it) and the reader gets a
    BodyReadError."""

    __slots__ = ("_done", "_limit", "_pending", "_request", "_size", "_source")

    def __init__(self, source: BodySource, request: HttpRequest, limit: int, size: int = 0) -> None:
        self._source = source
        self._request = request
        self._limit = limit
        self._size = size
        self._done = False
        self._pending: memoryview | None = None

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        pending = self._pending
        if pending is not None:
            return self._piece(pending)
        if self._done:
            raise StopAsyncIteration
        try:
            data = await self._source.next_body_piece()
            if data is not None:
                self._size += len(data)
                if self._size > self._limit:
                    raise BodyTooLarge(self._limit)
                if len(data) <= CHUNK_SIZE:
                    return data
                # A piece larger than a read usually is: hand it on in pieces of that size.
                return self._piece(memoryview(data))
        except (MalformedBody, BodyTooLarge, OSError) as exc:
            self._done = True
            self._request.body_error = exc
            raise BodyReadError(str(exc)) from exc
        self._done = True
        raise StopAsyncIteration

    def _piece(self, view: memoryview) -> bytes:
        self._pending = view[CHUNK_SIZE:] if len(view) > CHUNK_SIZE else None
        return bytes(view[:CHUNK_SIZE])

    async def aclose(self) -> None:
        """Stop reading; what the client still sends is dropped when the answer is out."""
        self._done = True
