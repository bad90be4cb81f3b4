"""A request or response body as it travels through the sidecar: the bytes
already in hand plus, for streamed bodies, an async iterator of the rest.
Streaming keeps memory bounded for bodies of any size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

CHUNK_SIZE = 64 * 1024


@dataclass(slots=True)
class Body:
    head: bytes = b""
    rest: AsyncIterator[bytes] | None = None
    # Declared length when the sender framed the body with Content-Length.
    length: int | None = None

    @property
    def complete(self) -> bool:
        """True when ``head`` is the whole body (it can be replayed or sent unary)."""
        return self.rest is None

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        if self.rest is not None:
            async for chunk in self.rest:
                if chunk:
                    yield chunk

    async def read_all(self, limit: int) -> bytes:
        """Buffer the whole body; raise BodyTooLarge past ``limit`` bytes."""
        if self.rest is None:
            if len(self.head) > limit:
                raise BodyTooLarge(limit)
            return self.head
        parts = [self.head]
        size = len(self.head)
        async for chunk in self.rest:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(chunk)
        return b"".join(parts)


class BodyReadError(Exception):
    """The sender's streamed body broke (too large, bad chunking, connection lost)."""


class BodyTooLarge(Exception):
    """A body exceeded the configured size limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds the limit of {limit} bytes")
        self.limit = limit


EMPTY = Body()


async def close_body(body: Body) -> None:
    """Release what an unread streamed body holds (pooled connection, gRPC call)."""
    rest = body.rest
    aclose = getattr(rest, "aclose", None)
    if aclose is not None:
        await aclose()
