"""Where a connection's request-body bytes meet whoever waits for them.

A streamed body's reader sleeps on a future until the client sends more; while anyone
waits for the client (that reader, or the connection reading a body up to the replay
buffer) the pace rules of ``body_pace`` are checked once a second. A client too slow
fails the sleeping reader with BodyTimedOut (the edge then answers 408), or, when the
connection itself was waiting, is reported to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.core.body import BodyTooLarge
from proxy.edge.body_pace import CHECK_INTERVAL, BodyPace, BodyPacePolicy, BodyTimedOut
from proxy.edge.lazy_timer import LazyTimer
from proxy.edge.request_reader import Incoming


class MalformedBody(ValueError):
    """The client broke the body's framing (bad chunking, closed in the middle)."""


class BodyFeed:
    __slots__ = (
        "_failed",
        "_loop",
        "_max_body",
        "_on_too_slow",
        "_pace",
        "_policy",
        "_timer",
        "_used",
        "_waiter",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        policy: BodyPacePolicy,
        on_too_slow: Callable[[str], None],
        max_body: int,
    ) -> None:
        self._loop = loop
        self._max_body = max_body
        self._policy = policy
        self._pace = BodyPace(policy, loop.time())
        self._used = False
        self._on_too_slow = on_too_slow
        self._timer = LazyTimer(loop, self._check)
        self._waiter: asyncio.Future[None] | None = None
        self._failed: Exception | None = None

    def reset(self) -> None:
        """A new request on the same connection: its body is measured afresh."""
        if self._used:
            self._used = False
            self._pace = BodyPace(self._policy, self._loop.time())
            self._timer.clear()

    def expect(self) -> None:
        """The connection waits for more of the body (no reader sleeps on it)."""
        self._used = True
        if not self._pace.waiting:
            self._pace.wait(self._loop.time())
            self._timer.set(CHECK_INTERVAL)

    def pause(self) -> None:
        """Nobody waits for the client now."""
        self._pace.pause(self._loop.time())
        self._timer.clear()

    async def next_piece(
        self, request: Incoming, resume_reading: Callable[[], None]
    ) -> bytes | None:
        """The next piece of ``request``'s body (None at its end), waiting as needed;
        raises BodyTooLarge or MalformedBody when the parser refused the rest."""
        while True:
            parts = request.parts
            if parts:
                return parts.popleft()
            if request.complete:
                return None
            error = request.error
            if error is not None:
                status, reason = error
                if status == 413:
                    raise BodyTooLarge(self._max_body)
                raise MalformedBody(reason)
            resume_reading()
            await self.wait_for_client()

    async def wait_for_client(self) -> None:
        """Sleep until ``arrived`` (or ``fail``); raises BodyTimedOut if the client is too slow."""
        if self._failed is not None:
            raise self._failed
        self.expect()
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
            self.pause()

    def arrived(self, size: int) -> bool:
        """Bytes (or the end) came in; False when no reader sleeps to take them."""
        self._used = True
        self._pace.received(size, self._loop.time())
        waiter = self._waiter
        if waiter is None or waiter.done():
            return False
        waiter.set_result(None)
        return True

    def close(self) -> None:
        """No more bytes will come (the connection is gone): a sleeping reader is woken
        with ConnectionResetError, and so is any later one."""
        self._failed = error = ConnectionResetError("the client connection was lost")
        self._timer.cancel()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _check(self) -> None:
        verdict = self._pace.verdict(self._loop.time())
        if verdict is None:
            if self._pace.waiting:
                self._timer.set(CHECK_INTERVAL)
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(BodyTimedOut(verdict))
        else:
            self._on_too_slow(verdict)
