"""The sidecar's own event-loop lag: a timer due every ``interval`` seconds records
how late it fired. A loop busy with something slow (a long parse, a blocking call)
fires it late by that long, so the lag histogram shows every stall, whatever caused
it. One loop timer, no task; the arithmetic is pure and takes an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

# Often enough to catch stalls of a fraction of a second; costs one timer callback.
LAG_INTERVAL = 0.5


class _Loop(Protocol):
    """What the timer needs of the loop: ``asyncio.AbstractEventLoop`` has it."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> asyncio.TimerHandle: ...


class LoopLagTimer:
    """Records ``lag(seconds)`` each time the timer fires: how late it was, never negative."""

    def __init__(
        self,
        record: Callable[[float], None],
        interval: float = LAG_INTERVAL,
        loop: _Loop | None = None,
    ) -> None:
        self._record = record
        self._interval = interval
        self._loop = loop
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> LoopLagTimer:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())
        return self

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._fired)

    def _fired(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._record(max(0.0, now - self._due))
        # From now, not from the missed due time: one stall is one late sample.
        self._schedule(now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
