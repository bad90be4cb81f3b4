"""The event-loop lag timer on a fake loop and clock: how late each firing was, one
sample per firing (a long stall is one late sample, not a burst), and the histogram
``tether_event_loop_lag_seconds`` it feeds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.observability.loop_lag import LoopLagTimer
from proxy.observability.metrics import Metrics


class FakeLoop:
    """Holds one timer; ``run_at(t)`` moves the clock to ``t`` and fires it if due."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], object]]] = []
        self.cancelled = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> asyncio.TimerHandle:
        self.timers.append((when, callback))
        loop = self

        class Handle:
            def cancel(self) -> None:
                loop.cancelled += 1

        return Handle()  # type: ignore[return-value]

    def run_at(self, now: float) -> None:
        self.now = now
        when, callback = self.timers[-1]
        assert now >= when
        callback()


def test_each_firing_records_how_late_it_was() -> None:
    loop, lags = FakeLoop(), list[float]()
    timer = LoopLagTimer(lags.append, interval=0.5, loop=loop).start()
    assert loop.timers[-1][0] == 100.5
    loop.run_at(100.5)  # on time
    loop.run_at(101.25)  # due 101.0: a quarter of a second late
    # A 3 s stall is one late sample; the next is due half a second after it ended.
    loop.run_at(104.75)
    assert loop.timers[-1][0] == 105.25
    loop.run_at(105.25)
    assert lags == [0.0, 0.25, 3.0, 0.0]
    timer.stop()
    assert loop.cancelled == 1


def test_a_timer_run_early_by_the_clock_resolution_counts_as_on_time() -> None:
    loop, lags = FakeLoop(), list[float]()
    LoopLagTimer(lags.append, interval=0.5, loop=loop).start()
    loop.timers[-1] = (100.4999, loop.timers[-1][1])
    loop.run_at(100.4999)
    assert lags == [0.0]


def test_the_lag_is_exported_as_a_histogram() -> None:
    metrics = Metrics("checkout")
    for seconds in (0.0, 0.003, 0.3):
        metrics.event_loop_lag(seconds)
    text = metrics.exposition()[0].decode()
    assert "# TYPE tether_event_loop_lag_seconds histogram" in text
    assert 'tether_event_loop_lag_seconds_count{app_id="checkout"} 3.0' in text
    assert 'tether_event_loop_lag_seconds_bucket{app_id="checkout",le="0.005"} 2.0' in text
    assert 'tether_event_loop_lag_seconds_bucket{app_id="checkout",le="0.5"} 3.0' in text
    assert "tether_event_loop_lag_seconds_created" not in text


def test_a_real_loop_fires_it_and_stop_ends_it() -> None:
    async def main() -> list[float]:
        lags: list[float] = []
        timer = LoopLagTimer(lags.append, interval=0.01).start()
        for _ in range(500):
            if lags:
                break
            await asyncio.sleep(0.01)
        timer.stop()
        return lags

    assert all(lag >= 0 for lag in asyncio.run(main()))
