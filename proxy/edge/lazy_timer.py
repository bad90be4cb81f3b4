"""A deadline that is cheap to move, for the per-connection header and idle timeouts:
one timer handle per connection, re-armed only when it fires before the deadline, so
starting a request costs a clock read instead of a new handle and a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LazyTimer:
    __slots__ = ("_callback", "_deadline", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
        self._loop = loop
        self._callback = callback
        self._deadline: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def set(self, delay: float) -> None:
        """Call back ``delay`` seconds from now, unless moved or cleared before."""
        self._deadline = deadline = self._loop.time() + delay
        handle = self._handle
        if handle is not None and handle.when() > deadline:
            handle.cancel()  # moved earlier: the old handle would fire too late
            handle = None
        if handle is None:
            self._handle = self._loop.call_at(deadline, self._fire)

    def clear(self) -> None:
        """No deadline for now; the pending handle (if any) fires and does nothing."""
        self._deadline = None

    def cancel(self) -> None:
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._fire)
            return
        self._deadline = None
        self._callback()
