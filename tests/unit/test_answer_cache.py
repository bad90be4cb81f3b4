"""The answer cache: TTL floor and ceiling, refresh hand-out, stale answers on failure
and the end of the stale window, negative answers, and the LRU bounds."""

from __future__ import annotations

import itertools

import pytest

from proxy.discovery.answer_cache import AnswerCache, CachePolicy, Failure, Lookup, State

ANSWER = ("10.0.0.1:50002", "10.0.0.2:50002")
OTHER = ("10.0.0.3:50002",)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: FakeClock, **policy: float | int) -> AnswerCache[str, tuple[str, ...]]:
    return AnswerCache(CachePolicy(**policy), clock=clock)  # type: ignore[arg-type]


def test_missing_names_are_resolved() -> None:
    found = cache(FakeClock())
    assert found.get("orders") == Lookup(State.MISSING, None, True, 0.0)


def test_an_answer_is_fresh_for_its_ttl() -> None:
    clock = FakeClock()
    found = cache(clock)
    assert found.store("orders", ANSWER, ttl=10.0) == 10.0
    clock.now += 9.5
    assert found.get("orders") == Lookup(State.FRESH, ANSWER, False, 9.5)
    clock.now += 0.5
    assert found.get("orders").state is State.EXPIRED


@pytest.mark.parametrize(
    ("ttl", "kept"), [(0.0, 1.0), (0.4, 1.0), (3.0, 3.0), (30.0, 30.0), (3600.0, 30.0)]
)
def test_ttl_floor_and_ceiling(ttl: float, kept: float) -> None:
    clock = FakeClock()
    found = cache(clock)
    assert found.store("orders", ANSWER, ttl=ttl) == kept
    clock.now += kept - 0.01
    assert found.get("orders").state is State.FRESH
    clock.now += 0.01
    assert found.get("orders").state is State.EXPIRED


def test_a_source_without_ttls_gets_the_default() -> None:
    assert cache(FakeClock()).store("orders", ANSWER) == 5.0


def test_floor_and_ceiling_are_configurable() -> None:
    found = cache(FakeClock(), ttl_floor=5.0, ttl_ceiling=300.0, negative_ttl=5.0)
    assert found.store("a", ANSWER, ttl=0.0) == 5.0
    assert found.store("b", ANSWER, ttl=3600.0) == 300.0


def test_an_expired_answer_is_served_while_one_caller_refreshes() -> None:
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=5.0)
    clock.now += 5.0
    first, second = found.get("orders"), found.get("orders")
    assert (first.state, first.answer, first.refresh) == (State.EXPIRED, ANSWER, True)
    assert (second.state, second.answer, second.refresh) == (State.EXPIRED, ANSWER, False)
    clock.now += 1.0  # the refresher never reported: someone else is told
    assert found.get("orders").refresh
    found.store("orders", OTHER, ttl=5.0)
    assert found.get("orders") == Lookup(State.FRESH, OTHER, False, 0.0)


def test_a_failed_early_refresh_changes_nothing() -> None:
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=10.0)
    assert found.failed("orders") is Failure.STILL_FRESH
    assert found.get("orders").state is State.FRESH


def test_stale_answer_is_served_for_the_window_after_refreshes_fail() -> None:
    clock = FakeClock()
    found = cache(clock, stale_window=60.0)
    found.store("orders", ANSWER, ttl=5.0)
    clock.now += 5.0
    assert found.get("orders").refresh
    assert found.failed("orders") is Failure.STALE_STARTED  # log it, once
    stale = found.get("orders")
    assert (stale.state, stale.answer, stale.refresh) == (State.STALE, ANSWER, False)
    assert stale.age == 5.0
    clock.now += 1.0
    assert found.get("orders").refresh
    assert found.failed("orders") is Failure.STALE  # not logged again
    clock.now += 59.0 - 0.01  # just inside the window, counted from the first failure
    assert found.get("orders").answer == ANSWER
    clock.now += 0.01
    over = found.get("orders")
    assert (over.state, over.answer) == (State.FAILING, None)
    assert found.failed("orders") is Failure.NO_ANSWER


def test_the_default_stale_window_is_at_least_a_minute() -> None:
    assert CachePolicy().stale_window >= 60.0
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=5.0)
    clock.now += 5.0
    found.failed("orders")
    clock.now += 299.0
    assert found.get("orders").answer == ANSWER


def test_refreshes_back_off_while_failing() -> None:
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=1.0)
    clock.now += 1.0
    handed_out: list[float] = []
    for _ in range(320):  # 40 s, looking every 125 ms (exact in binary), every refresh failing
        if found.get("orders").refresh:
            handed_out.append(clock.now)
            found.failed("orders")
        clock.now += 0.125
    gaps = [b - a for a, b in itertools.pairwise(handed_out)]
    assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_good_answer_after_failures_starts_afresh() -> None:
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=5.0)
    clock.now += 5.0
    found.failed("orders")
    found.failed("orders")
    found.store("orders", OTHER, ttl=5.0)
    assert found.get("orders").state is State.FRESH
    clock.now += 5.0
    assert found.get("orders").refresh
    assert found.failed("orders") is Failure.STALE_STARTED


def test_nxdomain_for_a_name_that_never_resolved_is_cached_briefly() -> None:
    clock = FakeClock()
    found = cache(clock)
    assert found.not_found("nobody") is State.NEGATIVE
    lookup = found.get("nobody")
    assert (lookup.state, lookup.refresh) == (State.NEGATIVE, False)  # fail at once
    clock.now += 4.9
    assert found.get("nobody").state is State.NEGATIVE
    clock.now += 0.1
    assert found.get("nobody") == Lookup(State.MISSING, None, True, 0.0)


@pytest.mark.parametrize(("ttl", "kept"), [(0.0, 1.0), (2.0, 2.0), (3600.0, 5.0)])
def test_negative_ttl_is_floored_and_capped(ttl: float, kept: float) -> None:
    clock = FakeClock()
    found = cache(clock)
    found.not_found("nobody", ttl=ttl)
    clock.now += kept - 0.01
    assert found.get("nobody").state is State.NEGATIVE
    clock.now += 0.01
    assert found.get("nobody").state is State.MISSING


def test_nxdomain_for_a_name_that_had_answers_is_honoured_after_its_ttl() -> None:
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=10.0)
    clock.now += 3.0
    assert found.not_found("orders") is State.FRESH  # an early refresh: the TTL stands
    assert found.get("orders").answer == ANSWER
    clock.now += 7.0
    assert found.not_found("orders") is State.NEGATIVE  # the app is gone
    assert found.get("orders") == Lookup(State.NEGATIVE, None, False, 0.0)


def test_nxdomain_ends_a_stale_period() -> None:
    clock = FakeClock()
    found = cache(clock)
    found.store("orders", ANSWER, ttl=1.0)
    clock.now += 1.0
    found.failed("orders")
    assert found.not_found("orders") is State.NEGATIVE
    assert found.get("orders").answer is None


def test_an_answer_replaces_a_negative_one() -> None:
    found = cache(FakeClock())
    found.not_found("orders")
    found.store("orders", ANSWER, ttl=5.0)
    assert found.get("orders").answer == ANSWER
    assert len(found) == 1


def test_failures_for_a_name_without_answer_fail_fast_between_retries() -> None:
    clock = FakeClock()
    found = cache(clock)
    assert found.failed("orders") is Failure.NO_ANSWER
    assert found.get("orders") == Lookup(State.FAILING, None, False, 0.0)
    clock.now += 1.0
    assert found.get("orders").refresh  # one caller tries again
    assert not found.get("orders").refresh
    assert found.failed("orders") is Failure.NO_ANSWER
    clock.now += 1.0
    assert not found.get("orders").refresh  # backing off: 2 s now
    clock.now += 1.0
    assert found.get("orders").refresh


def test_answers_are_bounded_least_recently_used_first() -> None:
    found = cache(FakeClock(), max_answers=3)
    for name in ("a", "b", "c"):
        found.store(name, ANSWER)
    found.get("a")
    found.store("d", ANSWER)
    assert found.get("b").state is State.MISSING
    assert [found.get(n).state for n in ("a", "c", "d")] == [State.FRESH] * 3
    assert len(found) == 3


def test_a_flood_of_unknown_names_does_not_evict_answers() -> None:
    found = cache(FakeClock(), max_answers=2, max_negatives=10)
    found.store("orders", ANSWER)
    for i in range(1000):
        found.not_found(f"random-{i}")
        found.failed(f"failing-{i}")
    assert found.get("orders").answer == ANSWER
    assert len(found) == 11


@pytest.mark.parametrize(
    "policy",
    [
        {"ttl_floor": 0.0},
        {"ttl_floor": 10.0, "ttl_ceiling": 5.0},
        {"negative_ttl": 0.5},
        {"default_ttl": 0.0},
        {"stale_window": -1.0},
        {"retry_base": 20.0},
        {"max_answers": 0},
        {"max_negatives": 0},
    ],
)
def test_invalid_policies_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CachePolicy(**policy)  # type: ignore[arg-type]
