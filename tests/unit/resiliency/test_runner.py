from __future__ import annotations

import asyncio
import random

import pytest

from resiliency.engine import ResiliencyEngine
from resiliency.errors import AttemptTimedOut, CircuitOpen, DeadlineExceeded
from resiliency.loader import load_texts
from resiliency.runner import SUCCESS, Outcome

from .fakes import FakeClock

HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\nspec:\n"


class App:
    """A fake app: fails ``failures`` times with ``status``, then answers 200."""

    def __init__(self, failures: int, status: int = 500, retry_after: float | None = None):
        self.failures = failures
        self.status = status
        self.retry_after = retry_after
        self.calls: list[int] = []

    async def __call__(self, attempt: int) -> int:
        self.calls.append(attempt)
        return self.status if len(self.calls) <= self.failures else 200


def classify(status: int) -> Outcome:
    return SUCCESS if 200 <= status <= 399 else Outcome(False, code=status)


def engine(policies: str, clock: FakeClock, target: str = "") -> ResiliencyEngine:
    text = HEADER + "  policies:\n" + policies
    if target:
        text += "  targets:\n    apps:\n      orders: {" + target + "}\n"
    config, report = load_texts([("f", text)])
    assert report.ok, report.lines()
    return ResiliencyEngine(config, clock=clock, sleep=clock.sleep, rng=random.Random(3))


RETRY5 = "    retries: {r: {duration: 1s, maxRetries: 5}}\n"


def run(eng: ResiliencyEngine, app: App, **kwargs: object) -> int:
    runner = eng.runner_for("orders", "m")
    return asyncio.run(runner.run(app, classify, **kwargs))  # type: ignore[arg-type]


def test_recovers_after_three_failures() -> None:
    clock = FakeClock()
    app = App(failures=3)
    assert run(engine(RETRY5, clock, "retry: r"), app) == 200
    assert app.calls == [1, 2, 3, 4]
    assert clock.sleeps == [1.0, 1.0, 1.0]


def test_always_failing_gives_last_result() -> None:
    app = App(failures=100, status=503)
    assert run(engine(RETRY5, FakeClock(), "retry: r"), app) == 503
    assert len(app.calls) == 6


def test_404_not_matching_is_called_once() -> None:
    policies = '    retries: {r: {maxRetries: 5, matching: {httpStatusCodes: "500-599"}}}\n'
    app = App(failures=100, status=404)
    assert run(engine(policies, FakeClock(), "retry: r"), app) == 404
    assert len(app.calls) == 1


def test_dapr_retries_404_by_default() -> None:
    app = App(failures=100, status=404)
    run(engine(RETRY5, FakeClock(), "retry: r"), app)
    assert len(app.calls) == 6


def test_breaker_stops_calls_after_n_plus_one_failures() -> None:
    policies = RETRY5 + "    circuitBreakers: {b: {trip: consecutiveFailures > 15}}\n"
    clock = FakeClock()
    eng = engine(policies, clock, "retry: r, circuitBreaker: b")
    app = App(failures=1000)
    for _ in range(2):
        assert run(eng, app) == 500
    with pytest.raises(CircuitOpen):
        run(eng, app)
    assert len(app.calls) == 16
    with pytest.raises(CircuitOpen):
        run(eng, app)
    assert len(app.calls) == 16  # open breaker: zero calls


def test_breaker_closes_again_after_timeout() -> None:
    policies = "    circuitBreakers: {b: {timeout: 30s, trip: consecutiveFailures > 0}}\n"
    clock = FakeClock()
    eng = engine(policies, clock, "circuitBreaker: b")
    run(eng, App(failures=1))
    with pytest.raises(CircuitOpen):
        run(eng, App(failures=0))
    clock.now += 30.0
    assert run(eng, App(failures=0)) == 200
    assert run(eng, App(failures=0)) == 200


def test_per_attempt_timeout_fires_and_is_retried() -> None:
    policies = "    timeouts: {t: 10ms}\n    retries: {r: {duration: 1s, maxRetries: 2}}\n"
    calls: list[int] = []

    async def hang(attempt: int) -> int:
        calls.append(attempt)
        await asyncio.Event().wait()
        return 200

    runner = engine(policies, FakeClock(), "timeout: t, retry: r").runner_for("orders", "m")
    with pytest.raises(AttemptTimedOut):
        asyncio.run(runner.run(hang, classify))
    assert calls == [1, 2, 3]


def test_transport_errors_mapped_by_the_caller() -> None:
    attempts: list[int] = []

    async def refused(attempt: int) -> int:
        attempts.append(attempt)
        raise ConnectionRefusedError("refused")

    runner = engine(RETRY5, FakeClock(), "retry: r").runner_for("orders", "m")
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(runner.run(refused, classify, errors=lambda exc: Outcome(False)))
    assert len(attempts) == 6


def test_builtin_retries_on_connection_failures_only_without_target() -> None:
    clock = FakeClock()
    eng = engine("    timeouts: {x: 1s}\n", clock)
    seen: list[int] = []

    async def unavailable(attempt: int) -> Outcome:
        seen.append(attempt)
        return Outcome(False, connection_failure=True)

    outcome = asyncio.run(eng.runner_for("orders", "m").run(unavailable, lambda o: o))
    assert not outcome.success and seen == [1, 1, 1, 1] and clock.sleeps == [1.0] * 3
    seen.clear()
    asyncio.run(eng.runner_for("orders", "m", streaming=True).run(unavailable, lambda o: o))
    assert seen == [1]


def test_attempt_hook_and_header_flag() -> None:
    policies = "    retries: {r: {duration: 1s, maxRetries: 2, attemptHeader: true}}\n"
    eng = engine(policies, FakeClock(), "retry: r")
    hooks: list[int] = []
    app = App(failures=5)
    asyncio.run(eng.runner_for("orders", "m").run(app, classify, on_attempt=hooks.append))
    assert hooks == app.calls == [1, 2, 3]
    assert eng.policy_for("orders").attempt_header


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policies = (
        "    retries: {r: {duration: 1s, maxRetries: 2, respectRetryAfter: true,"
        " maxRetryAfter: 5s}}\n"
    )
    clock = FakeClock()
    hints = iter([3.0, 60.0])

    async def limited(attempt: int) -> Outcome:
        return Outcome(False, code=429, retry_after=next(hints, None))

    asyncio.run(
        engine(policies, clock, "retry: r").runner_for("orders", "m").run(limited, lambda o: o)
    )
    assert clock.sleeps == [3.0, 5.0]


def test_overall_deadline_stops_retries() -> None:
    policies = (
        "    timeouts: {t: {overall: 2500ms}}\n    retries: {r: {duration: 1s, maxRetries: 10}}\n"
    )
    app = App(failures=100)
    assert run(engine(policies, FakeClock(), "timeout: t, retry: r"), app) == 500
    assert len(app.calls) == 3  # at 0s, 1s, 2s; a 4th would start after the deadline


def test_overall_deadline_cancels_a_hanging_attempt() -> None:
    policies = "    timeouts: {t: {overall: 10ms}}\n"

    async def hang(attempt: int) -> int:
        await asyncio.Event().wait()
        return 200

    runner = engine(policies, FakeClock(), "timeout: t").runner_for("orders", "m")
    with pytest.raises(DeadlineExceeded):
        asyncio.run(runner.run(hang, classify))


def test_retry_budget_limits_retries() -> None:
    policies = (
        "    retries: {r: {duration: 0s, maxRetries: 5,"
        " budget: {ratio: 0.5, minRetriesPerSecond: 0, window: 10s}}}\n"
    )
    eng = engine(policies, FakeClock(), "retry: r")
    app = App(failures=10_000)
    for _ in range(10):
        run(eng, app)
    retries = len(app.calls) - 10
    assert retries == 5  # half of the 10 requests in the window


def test_jitter_changes_delays() -> None:
    policies = "    retries: {r: {duration: 1s, maxRetries: 5, jitter: true}}\n"
    clock = FakeClock()
    run(engine(policies, clock, "retry: r"), App(failures=100))
    assert len(clock.sleeps) == 5 and all(0 <= s <= 1.0 for s in clock.sleeps)
    assert clock.sleeps != [1.0] * 5


def test_reload_keeps_unchanged_breakers() -> None:
    policies = "    circuitBreakers: {b: {trip: consecutiveFailures > 0}}\n"
    clock = FakeClock()
    eng = engine(policies, clock, "circuitBreaker: b")
    run(eng, App(failures=1))
    eng.reload(eng.config)
    with pytest.raises(CircuitOpen):
        run(eng, App(failures=0))
