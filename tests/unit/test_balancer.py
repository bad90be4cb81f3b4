"""The balancer: P2C on outstanding calls and peak-EWMA latency, slow start, instance
changes, skipping ejected instances, and a property test together with the outlier
detector."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.discovery.balancer import Balancer, BalancerPolicy, NoInstances
from proxy.discovery.outlier import OutlierDetector, OutlierPolicy
from proxy.discovery.registry import Endpoint

A, B, C, D = (Endpoint("10.0.0.1", 50002 + i) for i in range(4))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def balancer(
    *endpoints: Endpoint, clock: FakeClock | None = None, seed: int = 7, **policy: float
) -> Balancer:
    found = Balancer(BalancerPolicy(**policy), clock=clock or FakeClock(), rng=random.Random(seed))
    found.update(endpoints)
    return found


def call(found: Balancer, clock: FakeClock, latency: float, ok: bool = True) -> Endpoint:
    """One call, one at a time: pick, start, and finish after ``latency``."""
    chosen = found.pick()
    found.started(chosen)
    clock.now += latency
    found.finished(chosen, latency, ok)
    return chosen


def test_one_instance_is_always_picked() -> None:
    found = balancer(A)
    assert {found.pick() for _ in range(20)} == {A}
    assert found.pick(skip={A}) == A  # nowhere else to go


def test_no_instances_is_an_error() -> None:
    with pytest.raises(NoInstances):
        balancer().pick()
    with pytest.raises(NoInstances):
        balancer().pick(skip={A})


def test_p2c_takes_the_less_loaded_of_two() -> None:
    found = balancer(A, B)
    for _ in range(3):
        found.started(A)
    assert {found.pick() for _ in range(100)} == {B}
    for _ in range(4):
        found.started(B)
    assert {found.pick() for _ in range(100)} == {A}


def test_p2c_never_picks_the_most_loaded_and_shares_the_rest() -> None:
    found = balancer(A, B, C)
    for _ in range(5):
        found.started(C)
    found.started(B)
    picks = Counter(found.pick() for _ in range(3000))
    assert C not in picks
    # A wins against B and against C; B only against C: 2/3 and 1/3.
    assert picks[A] == pytest.approx(2000, rel=0.1)
    assert picks[B] == pytest.approx(1000, rel=0.2)


def test_equal_instances_share_evenly() -> None:
    found = balancer(A, B, C, D)
    picks = Counter(found.pick() for _ in range(4000))
    assert set(picks) == {A, B, C, D}
    assert all(count == pytest.approx(1000, rel=0.15) for count in picks.values())


def test_latency_breaks_ties_between_equally_loaded_instances() -> None:
    clock = FakeClock()
    found = balancer(A, B, clock=clock)
    found.started(A)
    found.finished(A, 0.010, ok=True)
    found.started(B)
    found.finished(B, 0.050, ok=True)
    assert {found.pick() for _ in range(100)} == {A}
    # Calls in flight still count: three on A cost 4 x 10 ms < 50 ms; five cost 60 ms.
    for _ in range(3):
        found.started(A)
    assert {found.pick() for _ in range(100)} == {A}
    for _ in range(2):
        found.started(A)
    assert {found.pick() for _ in range(100)} == {B}


def test_peak_ewma_rises_at_once_and_falls_with_the_decay() -> None:
    clock = FakeClock()
    found = balancer(A, B, clock=clock)
    found.finished(A, 0.100, ok=True)
    assert found.cost(A) == pytest.approx(0.100)
    found.finished(A, 0.010, ok=True)  # no time passed: a fast answer barely moves it
    assert found.cost(A) == pytest.approx(0.100)
    clock.now += 10.0  # one time constant
    assert found.cost(A) == pytest.approx(0.100 * math.exp(-1))  # idle decay
    found.finished(A, 0.010, ok=True)
    kept = math.exp(-1)
    assert found.cost(A) == pytest.approx(0.100 * kept + 0.010 * (1 - kept))
    found.finished(A, 0.500, ok=True)  # peak
    assert found.cost(A) == pytest.approx(0.500)


def test_cost_has_a_floor_so_calls_in_flight_still_count() -> None:
    found = balancer(A, B)
    assert found.cost(A) == pytest.approx(0.001)  # new: optimistic, at the floor
    found.started(A)
    found.started(A)
    assert found.cost(A) == pytest.approx(0.003)


def test_an_idle_slow_instance_is_tried_again_later() -> None:
    clock = FakeClock()
    found = balancer(A, B, clock=clock)
    found.finished(A, 0.200, ok=True)
    start = clock.now
    while call(found, clock, 0.005) == B:  # B's estimate stays at 5 ms, A's decays
        clock.now += 0.1
        assert clock.now - start < 60.0
    # 200 ms * exp(-t / 10 s) falls below 5 ms after 10 s * ln(40), about 37 s.
    assert clock.now - start == pytest.approx(10 * math.log(40), abs=0.5)


def test_a_fast_failure_does_not_make_an_instance_look_fast() -> None:
    clock = FakeClock()
    found = balancer(A, B, clock=clock)
    found.finished(B, 0.005, ok=True)
    found.finished(A, 0.0001, ok=False)  # connection refused in 0.1 ms
    assert found.cost(A) == pytest.approx(1.0)
    assert {found.pick() for _ in range(100)} == {B}


def test_outstanding_never_goes_below_zero() -> None:
    found = balancer(A, B)
    found.finished(A, 0.01, ok=True)
    assert found.outstanding(A) == 0


def test_ejected_instances_are_skipped() -> None:
    found = balancer(A, B, C)
    assert {found.pick(skip={A}) for _ in range(200)} == {B, C}
    assert {found.pick(skip={A, B}) for _ in range(50)} == {C}
    assert found.panics == 0


def test_when_every_instance_is_skipped_the_pick_panics_over_all() -> None:
    found = balancer(A, B)
    picks = {found.pick(skip={A, B}) for _ in range(50)}
    assert picks == {A, B}
    assert found.panics == 50


def test_the_first_instances_start_warm() -> None:
    found = balancer(A, B)
    assert found.weight(A) == found.weight(B) == 1.0


def test_slow_start_weight_ramps_over_the_window() -> None:
    clock = FakeClock()
    found = balancer(A, clock=clock)
    found.update([A, B])
    assert found.weight(A) == 1.0
    assert found.weight(B) == pytest.approx(0.1)  # Envoy's min_weight_percent
    clock.now += 0.5
    assert found.weight(B) == pytest.approx(0.1)
    clock.now += 2.5
    assert found.weight(B) == pytest.approx(0.3)
    clock.now += 4.0
    assert found.weight(B) == pytest.approx(0.7)
    clock.now += 3.0
    assert found.weight(B) == 1.0


def test_a_new_instance_gets_a_ramping_share_of_one_call_at_a_time() -> None:
    clock = FakeClock()
    found = balancer(A, clock=clock, seed=3)
    for _ in range(50):
        call(found, clock, 0.005)
    found.update([A, B])
    shares = []
    for _second in range(12):
        end = clock.now + 1.0
        picks: Counter[Endpoint] = Counter()
        while clock.now < end:
            picks[call(found, clock, 0.005)] += 1
        shares.append(picks[B] / (picks[A] + picks[B]))
    assert 0 < shares[0] < 0.25  # some traffic at once, little of it
    assert shares[0] < shares[4] < shares[8]
    assert shares[11] == pytest.approx(0.5, abs=0.1)  # warm: an even share


def test_slow_start_can_be_turned_off() -> None:
    found = balancer(A, slow_start_window=0.0)
    found.update([A, B])
    assert found.weight(B) == 1.0


def test_removal_keeps_the_stats_of_instances_that_stay() -> None:
    clock = FakeClock()
    found = balancer(A, B, C, clock=clock)
    found.started(A)
    found.started(A)
    found.finished(C, 0.040, ok=True)
    cost_a, cost_c = found.cost(A), found.cost(C)
    found.update([A, C, D])
    assert found.instances == (A, C, D)
    assert found.outstanding(A) == 2
    assert (found.cost(A), found.cost(C)) == (cost_a, cost_c)
    assert found.weight(A) == found.weight(C) == 1.0
    assert found.weight(D) == pytest.approx(0.1)  # joined a running app: warms up
    with pytest.raises(KeyError):
        found.cost(B)
    found.finished(B, 0.1, ok=False)  # a call in flight to a removed instance
    found.started(B)
    assert found.outstanding(B) == 0
    assert B not in {found.pick() for _ in range(200)}


def test_an_instance_removed_and_added_again_starts_afresh() -> None:
    clock = FakeClock()
    found = balancer(A, B, clock=clock)
    found.started(B)
    found.update([A])
    found.update([A, B])
    assert found.outstanding(B) == 0
    assert found.weight(B) == pytest.approx(0.1)


def test_duplicates_in_an_update_count_once() -> None:
    found = balancer(A, B, A)
    assert found.instances == (A, B)


@pytest.mark.parametrize(
    "policy",
    [{"decay": 0.0}, {"floor": 0.0}, {"min_weight": 0.0}, {"slow_start_window": -1.0}],
)
def test_invalid_policies_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BalancerPolicy(**policy)


_POOL = [Endpoint(f"10.1.0.{i}", 50002) for i in range(1, 7)]

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("update"), st.sets(st.sampled_from(_POOL), min_size=1)),
        st.tuples(st.just("call"), st.booleans(), st.floats(0.0, 2.0)),
        st.tuples(st.just("start"), st.integers(0, 5)),
        st.tuples(st.just("fail"), st.sampled_from(_POOL)),
        st.tuples(st.just("wait"), st.floats(0.0, 120.0)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(
    first=st.sets(st.sampled_from(_POOL), min_size=1),
    steps=_steps,
    seed=st.integers(0, 2**32 - 1),
    probing=st.booleans(),
)
def test_never_an_ejected_or_unknown_instance_while_a_healthy_one_exists(
    first: set[Endpoint], steps: list[tuple[object, ...]], seed: int, probing: bool
) -> None:
    clock = FakeClock()
    found = Balancer(clock=clock, rng=random.Random(seed))
    detector = OutlierDetector(OutlierPolicy(consecutive_failures=2, probing=probing), clock=clock)
    found.update(sorted(first, key=str))
    detector.update(first)
    current = set(first)
    in_flight: list[Endpoint] = []
    for step in steps:
        match step:
            case ("update", endpoints):
                assert isinstance(endpoints, set)
                current = set(endpoints)
                found.update(sorted(current, key=str))
                detector.update(current)
            case ("call", ok, latency):
                assert isinstance(ok, bool) and isinstance(latency, float)
                ejected = detector.ejected()
                chosen = found.pick(skip=ejected)
                assert chosen in current
                if current - ejected:
                    assert chosen not in ejected
                found.started(chosen)
                clock.now += latency
                found.finished(chosen, latency, ok)
                detector.record(chosen, ok)
            case ("start", count):
                assert isinstance(count, int)
                for _ in range(count):
                    chosen = found.pick(skip=detector.ejected())
                    found.started(chosen)
                    in_flight.append(chosen)
            case ("fail", endpoint):
                # A failure the detector sees while the balancer sees a fast answer:
                # the ejected instance then looks the cheapest, and must still be skipped.
                assert isinstance(endpoint, Endpoint)
                found.finished(endpoint, 0.0, ok=True)
                detector.record(endpoint, ok=False)
            case ("wait", seconds):
                assert isinstance(seconds, float)
                clock.now += seconds
                for endpoint in detector.due_for_probe():
                    detector.probe_result(endpoint, ok=seed % 2 == 0)
                while in_flight:
                    found.finished(in_flight.pop(), seconds, ok=True)
    assert all(found.outstanding(e) >= 0 for e in current)


def test_rejoin_forgets_the_failures_and_warms_up_again() -> None:
    clock = FakeClock()
    found = balancer(A, B, clock=clock)
    found.started(A)
    found.finished(A, 0.01, ok=False)  # counts as the 1 s penalty
    found.started(A)  # one call still in flight
    clock.now += 1
    assert found.cost(A) > found.cost(B)
    found.rejoin(A)
    assert found.outstanding(A) == 1
    assert found.weight(A) == pytest.approx(0.1)
    assert found.cost(A) == pytest.approx(2 * found.policy.floor)
    found.rejoin(C)  # not an instance: ignored
