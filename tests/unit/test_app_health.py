from __future__ import annotations

from proxy.app.health import AppHealthState


def test_unhealthy_until_first_success() -> None:
    state = AppHealthState(threshold=3)
    assert not state.healthy
    assert not state.record(False)
    assert state.record(True)
    assert state.healthy


def test_threshold_failures_in_a_row_make_it_unhealthy() -> None:
    state = AppHealthState(threshold=3)
    state.record(True)
    assert not state.record(False)
    assert not state.record(False)
    assert state.healthy
    assert state.record(False)
    assert not state.healthy
    assert state.record(True)
    assert state.healthy


def test_a_success_resets_the_failure_count() -> None:
    state = AppHealthState(threshold=2)
    state.record(True)
    state.record(False)
    state.record(True)
    state.record(False)
    assert state.healthy
