from __future__ import annotations

import pytest

from resiliency.circuit_breaker import BreakerCache, BreakerState, CircuitBreaker
from resiliency.errors import CircuitOpen, TooManyRequests

from .fakes import FakeClock, breaker_policy


def fail(breaker: CircuitBreaker) -> None:
    breaker.after_call(breaker.before_call(), success=False)


def succeed(breaker: CircuitBreaker) -> None:
    breaker.after_call(breaker.before_call(), success=True)


def test_closed_open_half_open_closed() -> None:
    clock = FakeClock()
    changes: list[tuple[str, BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        "orders:m", breaker_policy(max_requests=2), clock, lambda *c: changes.append(c)
    )
    for _ in range(3):
        fail(breaker)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="circuit breaker is open"):
        breaker.before_call()
    clock.now += 30.0
    assert breaker.state == BreakerState.HALF_OPEN  # type: ignore[comparison-overlap]
    first, second = breaker.before_call(), breaker.before_call()
    with pytest.raises(TooManyRequests, match="too many requests"):
        breaker.before_call()
    breaker.after_call(first, success=True)
    breaker.after_call(second, success=True)
    assert breaker.state is BreakerState.CLOSED
    assert [(old, new) for _, old, new in changes] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_half_open_failure_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("k", breaker_policy(), clock)
    for _ in range(3):
        fail(breaker)
    clock.now += 30.0
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_success_resets_consecutive_failures() -> None:
    breaker = CircuitBreaker("k", breaker_policy(), FakeClock())
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.counts.total_failures == 4


def test_interval_clears_closed_counts() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("k", breaker_policy(interval=10.0), clock)
    fail(breaker)
    fail(breaker)
    clock.now += 10.0
    assert breaker.counts.requests == 0
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_stale_generation_is_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("k", breaker_policy(interval=10.0), clock)
    generation = breaker.before_call()
    clock.now += 10.0
    breaker.after_call(generation, success=False)
    assert breaker.counts.total_failures == 0


def test_cache_is_lru() -> None:
    cache = BreakerCache(breaker_policy(), 2, FakeClock())
    a = cache.get("app:a")
    cache.get("app:b")
    assert cache.get("app:a") is a
    cache.get("app:c")  # evicts b, the least recently used
    assert len(cache) == 2
    assert cache.get("app:a") is a
