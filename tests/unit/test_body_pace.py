"""The pace rules for request bodies, on an injected clock."""

from __future__ import annotations

import pytest

from proxy.edge.body_pace import BodyPace, BodyPacePolicy

POLICY = BodyPacePolicy(idle_timeout=30.0, min_rate=240.0, grace=5.0)


def test_a_steady_body_is_fine() -> None:
    pace = BodyPace(POLICY, 0.0)
    pace.wait(0.0)
    for second in range(1, 60):
        pace.received(1000, float(second))
        assert pace.verdict(float(second)) is None


def test_no_progress_for_the_idle_timeout_ends_it() -> None:
    pace = BodyPace(BodyPacePolicy(idle_timeout=30.0, min_rate=0.0), 0.0)
    pace.wait(0.0)
    pace.received(10, 1.0)
    assert pace.verdict(30.9) is None
    assert pace.verdict(31.0) == "no request body bytes for 30s"


def test_a_trickle_is_stopped_after_the_grace_period() -> None:
    pace = BodyPace(POLICY, 0.0)
    pace.wait(0.0)
    for second in range(1, 5):
        pace.received(1, float(second))  # a byte a second dodges the idle rule
        assert pace.verdict(float(second)) is None  # still within the grace period
    pace.received(1, 5.0)
    assert pace.verdict(5.0) == (
        "request body arrives at 1 bytes/s, under the minimum of 240 bytes/s"
    )


def test_time_not_spent_waiting_on_the_client_does_not_count() -> None:
    pace = BodyPace(POLICY, 0.0)
    pace.wait(0.0)
    pace.received(2000, 1.0)
    pace.pause(1.0)  # the reader is busy upstream for a long while
    assert pace.verdict(500.0) is None  # nobody waits: no verdict
    pace.wait(500.0)
    pace.received(2000, 501.0)
    # Waited 6 s in all for 4000 bytes: fast enough. The 499 s of pause never count.
    assert pace.verdict(505.0) is None
    # 31 s waited for 4000 bytes: 129 bytes/s.
    assert pace.verdict(530.0) == (
        "request body arrives at 129 bytes/s, under the minimum of 240 bytes/s"
    )


def test_policy_values_are_checked() -> None:
    with pytest.raises(ValueError):
        BodyPacePolicy(idle_timeout=0)
    with pytest.raises(ValueError):
        BodyPacePolicy(min_rate=-1)
