"""The engine's per-target state is bounded: made-up app IDs cannot grow it forever."""

from __future__ import annotations

import random

import pytest

from resiliency.bounded import LruDict
from resiliency.circuit_breaker import BreakerState
from resiliency.engine import MAX_TARGET_APPS, ResiliencyEngine
from resiliency.loader import load_texts

from .fakes import FakeClock

BREAK_ON_FIRST = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    circuitBreakers:
      DefaultAppCircuitBreakerPolicy: {maxRequests: 1, timeout: 60s, trip: consecutiveFailures >= 1}
"""


def breaker_state(engine: ResiliencyEngine, app_id: str) -> BreakerState:
    breaker = engine.runner_for(app_id, "m").breaker
    assert breaker is not None
    return breaker.state


def test_lru_dict_keeps_the_most_recently_used() -> None:
    lru: LruDict[str, int] = LruDict(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2
    with pytest.raises(ValueError):
        LruDict(0)


def test_a_flood_of_made_up_app_ids_keeps_at_most_the_bound() -> None:
    config, report = load_texts([("f", BREAK_ON_FIRST)])
    assert report.ok, report.lines()
    clock = FakeClock()
    engine = ResiliencyEngine(
        config, clock=clock, sleep=clock.sleep, rng=random.Random(1), max_target_apps=3
    )
    breaker = engine.runner_for("orders", "m").breaker
    assert breaker is not None  # the default breaker applies to every app
    breaker.after_call(breaker.before_call(), success=False)  # trips
    assert breaker_state(engine, "orders") is BreakerState.OPEN
    for index in range(10):
        engine.runner_for(f"made-up-{index}", "m")
    assert len(engine._breakers) == 3 and len(engine._policies) == 3
    # orders was forgotten with the rest of the least recently called: closed again.
    assert breaker_state(engine, "orders") is BreakerState.CLOSED
    assert MAX_TARGET_APPS == 1024
