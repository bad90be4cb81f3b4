"""The edge's lazy deadline: moving it costs no new timer handle, an early firing
re-arms for the real deadline, a cleared deadline fires into nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from proxy.edge.lazy_timer import LazyTimer


class _Handle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self._when = when
        self.callback = callback
        self.cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True


class _FakeLoop:
    """Just enough of an event loop: a clock moved by hand and call_at."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Handle:
        handle = _Handle(when, callback)
        self.handles.append(handle)
        return handle

    def advance(self, to: float) -> None:
        self.now = to
        while due := [h for h in self.handles if h.when() <= to and not h.cancelled]:
            for handle in due:
                self.handles.remove(handle)
                handle.callback()
        self.handles = [h for h in self.handles if not h.cancelled]


def _timer() -> tuple[_FakeLoop, LazyTimer, list[float]]:
    loop = _FakeLoop()
    fired: list[float] = []
    timer = LazyTimer(cast(asyncio.AbstractEventLoop, loop), lambda: fired.append(loop.now))
    return loop, timer, fired


def test_moving_the_deadline_later_reuses_the_handle_and_fires_once_at_the_end() -> None:
    loop, timer, fired = _timer()
    timer.set(10)
    for now in (2, 4, 6):  # three requests, each moving the deadline
        loop.now = now
        timer.set(10)
    assert len(loop.handles) == 1
    loop.advance(10)  # the first handle fires early and re-arms for 16
    assert fired == []
    assert [h.when() for h in loop.handles] == [16]
    loop.advance(16)
    assert fired == [16]


def test_a_cleared_deadline_fires_into_nothing_and_a_new_one_arms_again() -> None:
    loop, timer, fired = _timer()
    timer.set(10)
    timer.clear()
    loop.advance(10)
    assert fired == []
    assert loop.handles == []
    timer.set(5)
    loop.advance(15)
    assert fired == [15]


def test_an_earlier_deadline_replaces_the_pending_handle() -> None:
    loop, timer, fired = _timer()
    timer.set(10)
    timer.set(2)
    loop.advance(2)
    assert fired == [2]
    loop.advance(20)
    assert fired == [2]


def test_cancel_drops_the_handle() -> None:
    loop, timer, fired = _timer()
    timer.set(1)
    timer.cancel()
    loop.advance(5)
    assert fired == []
