"""A fake clock whose sleep advances it, so no test really waits."""

from __future__ import annotations

import random

from resiliency.policies import BreakerPolicy
from resiliency.trip import compile_trip


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def rng() -> random.Random:
    return random.Random(1234)


def breaker_policy(
    trip: str = "consecutiveFailures > 2",
    max_requests: int = 1,
    interval: float = 0.0,
    timeout: float = 30.0,
) -> BreakerPolicy:
    return BreakerPolicy("simple", max_requests, interval, timeout, compile_trip(trip))
