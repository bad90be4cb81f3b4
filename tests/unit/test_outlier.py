"""Outlier ejection: consecutive failures, growing and capped ejection time, the share
cap with at least one, probation, probes, and instance-set changes."""

from __future__ import annotations

import pytest

from proxy.discovery.outlier import Ejection, OutlierDetector, OutlierPolicy, Phase
from proxy.discovery.registry import Endpoint

A, B, C, D = (Endpoint("10.0.0.1", 50002 + i) for i in range(4))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detector(
    *endpoints: Endpoint, clock: FakeClock, **policy: float | int | bool
) -> OutlierDetector:
    found = OutlierDetector(OutlierPolicy(**policy), clock=clock)  # type: ignore[arg-type]
    found.update(endpoints or (A, B))
    return found


def fail(found: OutlierDetector, endpoint: Endpoint, times: int) -> Ejection | None:
    result = None
    for _ in range(times):
        result = found.record(endpoint, ok=False)
    return result


def test_ejected_after_five_consecutive_failures() -> None:
    clock = FakeClock()
    found = detector(clock=clock)
    assert fail(found, A, 4) is None
    assert found.ejected() == frozenset()
    assert fail(found, A, 1) == Ejection(A, 30.0, 1)
    assert found.ejected() == {A}
    assert found.phase(A) is Phase.EJECTED
    assert found.ejections_total == 1


def test_threshold_is_configurable() -> None:
    found = detector(clock=FakeClock(), consecutive_failures=2)
    assert fail(found, A, 1) is None
    assert fail(found, A, 1) is not None


def test_a_success_resets_the_count() -> None:
    found = detector(clock=FakeClock())
    fail(found, A, 4)
    found.record(A, ok=True)
    assert fail(found, A, 4) is None
    assert found.ejected() == frozenset()


def test_returns_on_probation_after_the_ejection_time() -> None:
    clock = FakeClock()
    found = detector(clock=clock)
    fail(found, A, 5)
    clock.now += 29.9
    assert found.ejected() == {A}
    clock.now += 0.1
    assert found.ejected() == frozenset()
    assert found.phase(A) is Phase.PROBATION
    assert found.record(A, ok=True) is None
    assert found.phase(A) is Phase.HEALTHY
    # Healthy again: it takes the full count to eject it.
    assert fail(found, A, 4) is None


def test_a_failed_trial_call_ejects_again_at_once_for_longer() -> None:
    clock = FakeClock()
    found = detector(clock=clock)
    fail(found, A, 5)
    clock.now += 30.0
    assert found.record(A, ok=False) == Ejection(A, 60.0, 2)
    assert found.ejected() == {A}
    assert found.ejections_total == 2


def test_ejection_time_grows_and_is_capped() -> None:
    clock = FakeClock()
    found = detector(clock=clock)
    durations: list[tuple[float, int]] = []
    ejection = fail(found, A, 5)
    while ejection is not None and len(durations) < 14:
        durations.append((ejection.duration, ejection.multiplier))
        clock.now += ejection.duration
        ejection = found.record(A, ok=False)
    assert [d for d, _ in durations] == [30.0 * n for n in range(1, 11)] + [300.0] * 4
    # Growth stops once base * n >= max + base (n = 11), so decay back takes bounded time.
    assert [m for _, m in durations][9:] == [10, 11, 11, 11, 11]


def test_custom_times_and_cap() -> None:
    clock = FakeClock()
    found = detector(clock=clock, base_ejection_time=10.0, max_ejection_time=25.0)
    first = fail(found, A, 5)
    assert first is not None and first.duration == 10.0
    clock.now += 10.0
    second = found.record(A, ok=False)
    assert second is not None and second.duration == 20.0
    clock.now += 20.0
    third = found.record(A, ok=False)
    assert third is not None and third.duration == 25.0


def test_multiplier_decays_by_one_per_healthy_interval() -> None:
    clock = FakeClock()
    found = detector(clock=clock)
    fail(found, A, 5)  # n = 1
    clock.now += 30.0
    found.record(A, ok=False)  # n = 2, 60 s
    clock.now += 60.0
    found.record(A, ok=False)  # n = 3, 90 s
    clock.now += 90.0
    found.record(A, ok=True)  # healthy again
    clock.now += 19.9  # one full interval of 10 s: n = 2
    ejection = fail(found, A, 5)
    assert ejection == Ejection(A, 90.0, 3)
    clock.now += 90.0
    found.record(A, ok=True)
    clock.now += 100.0  # ten intervals: back to the bottom
    assert fail(found, A, 5) == Ejection(A, 30.0, 1)


def test_results_while_ejected_are_ignored() -> None:
    clock = FakeClock()
    found = detector(clock=clock)
    fail(found, A, 5)
    clock.now += 10.0
    assert fail(found, A, 20) is None  # calls in flight when it was ejected
    found.record(A, ok=True)
    assert found.ejected() == {A}
    clock.now += 20.0
    assert found.ejected() == frozenset()
    assert found.ejections_total == 1


def test_one_of_two_can_be_ejected_but_not_both() -> None:
    found = detector(A, B, clock=FakeClock())
    assert fail(found, A, 5) is not None
    assert fail(found, B, 50) is None
    assert found.ejected() == {A}


def test_at_least_one_even_when_the_percentage_allows_none() -> None:
    hosts = [Endpoint("10.0.1.1", 1 + i) for i in range(5)]
    found = detector(*hosts, clock=FakeClock(), max_ejection_percent=10.0)  # Envoy's default
    first, second = Endpoint("10.0.1.1", 1), Endpoint("10.0.1.1", 2)
    assert fail(found, first, 5) is not None
    assert fail(found, second, 5) is None
    assert found.ejected() == {first}


def test_max_ejection_percent_is_respected() -> None:
    found = detector(A, B, C, D, clock=FakeClock())  # 50% of 4: two
    assert fail(found, A, 5) is not None
    assert fail(found, B, 5) is not None
    assert fail(found, C, 5) is None
    assert found.ejected() == {A, B}
    hosts = [Endpoint("10.0.2.1", 1 + i) for i in range(20)]
    many = detector(*hosts, clock=FakeClock(), max_ejection_percent=10.0)
    assert [fail(many, h, 5) is not None for h in hosts[:3]] == [True, True, False]


def test_a_refused_ejection_keeps_counting_and_happens_when_room_is_made() -> None:
    clock = FakeClock()
    found = detector(A, B, clock=clock)
    fail(found, A, 5)
    fail(found, B, 7)  # refused by the cap
    clock.now += 30.0
    found.record(A, ok=True)  # A back and healthy: room for one
    assert found.record(B, ok=False) == Ejection(B, 30.0, 1)
    assert found.ejected() == {B}


def test_probing_keeps_the_instance_out_until_a_probe_succeeds() -> None:
    clock = FakeClock()
    found = detector(clock=clock, probing=True)
    fail(found, A, 5)
    clock.now += 29.0
    assert found.due_for_probe() == []
    clock.now += 1.0
    assert found.ejected() == {A}  # not back yet: no real call is spent on it
    assert found.phase(A) is Phase.PROBING
    assert found.due_for_probe() == [A]
    assert found.due_for_probe() == []  # handed out once
    assert found.probe_result(A, ok=True) is None
    assert found.ejected() == frozenset()
    assert found.phase(A) is Phase.HEALTHY


def test_a_failed_probe_ejects_again_for_longer() -> None:
    clock = FakeClock()
    found = detector(clock=clock, probing=True)
    fail(found, A, 5)
    clock.now += 30.0
    assert found.due_for_probe() == [A]
    assert found.probe_result(A, ok=False) == Ejection(A, 60.0, 2)
    assert found.phase(A) is Phase.EJECTED
    clock.now += 59.0
    assert found.due_for_probe() == []
    clock.now += 1.0
    assert found.due_for_probe() == [A]


def test_probe_results_out_of_turn_are_ignored() -> None:
    clock = FakeClock()
    found = detector(clock=clock, probing=True)
    assert found.probe_result(A, ok=False) is None  # healthy: no probe was asked
    fail(found, A, 5)
    assert found.probe_result(A, ok=True) is None  # still within its ejection time
    assert found.ejected() == {A}
    assert found.probe_result(Endpoint("10.9.9.9", 1), ok=True) is None


def test_update_keeps_the_state_of_instances_that_stay() -> None:
    clock = FakeClock()
    found = detector(A, B, C, D, clock=clock)
    fail(found, A, 5)
    fail(found, B, 3)
    found.update([A, B, D])
    assert found.ejected() == {A}
    assert fail(found, B, 2) is None  # A out, 2 of 3 would exceed 50%
    found.update([B, C])
    assert found.ejected() == frozenset()
    assert found.phase(A) is None
    assert fail(found, B, 1) is not None  # its count survived both updates
    found.update([A, B, C])
    assert found.phase(A) is Phase.HEALTHY  # re-added: a fresh start


def test_unknown_instances_are_ignored() -> None:
    found = detector(clock=FakeClock())
    assert fail(found, Endpoint("10.9.9.9", 1), 10) is None
    assert found.ejected() == frozenset()


@pytest.mark.parametrize(
    "policy",
    [
        {"consecutive_failures": 0},
        {"base_ejection_time": 0.0},
        {"base_ejection_time": 60.0, "max_ejection_time": 30.0},
        {"max_ejection_percent": 101.0},
        {"interval": 0.0},
    ],
)
def test_invalid_policies_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OutlierPolicy(**policy)  # type: ignore[arg-type]
