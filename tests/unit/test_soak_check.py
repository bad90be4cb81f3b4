"""The soak's verdict: which failed calls the retry contract allows, double and
missing executions, and the lag p99 read from a histogram exposition."""

from __future__ import annotations

import math

import pytest

from bench.soak_check import Call, Kill, executions, histogram_quantile, judge

KILL = Kill(instance=1, start=10.0, end=10.1, ready=12.0)
LOST = "failed to invoke, id: orders, err: rpc error: code = Unavailable desc = connection lost"


def failed(
    call_id: str, start: float, end: float, error: str = "ERR_DIRECT_INVOKE", detail: str = ""
) -> Call:
    return Call(call_id, start, end, 500, error, detail)


def test_a_failure_in_flight_during_a_kill_is_allowed() -> None:
    verdict = judge([failed("a", 9.9, 10.05, detail=LOST)], [KILL], {"a": [1]})
    assert (verdict.failed, verdict.allowed, verdict.beyond) == (1, 1, [])
    assert verdict.executed_failed == 1 and verdict.passed
    assert verdict.allowed_after_death == 0


def test_a_call_sent_on_the_dead_connection_before_the_caller_noticed_is_allowed() -> None:
    verdict = judge([failed("a", 10.3, 10.5, detail=LOST)], [KILL], {})
    assert verdict.allowed == verdict.allowed_after_death == 1 and verdict.passed


@pytest.mark.parametrize(
    ("call", "ran_on"),
    [
        (failed("a", 12.1, 12.3, detail=LOST), []),  # after the replacement was up
        (failed("a", 10.2, 10.3, detail="failed to connect"), []),  # a new connection
        (failed("a", 9.0, 9.9, detail=LOST), []),  # before the kill
        (failed("a", 9.9, 10.2, detail=LOST), [0]),  # the surviving instance ran it
        (failed("a", 9.9, 10.2, "wire: ConnectionResetError", LOST), []),  # not Dapr's error
        (Call("a", 9.9, 10.2, 503, "ERR_DIRECT_INVOKE", LOST), []),
        (failed("a", 9.9, 10.2, detail="failed to connect"), []),  # retries ran out
    ],
)
def test_other_failures_are_beyond_the_contract(call: Call, ran_on: list[int]) -> None:
    verdict = judge([call], [KILL], {"a": ran_on})
    assert verdict.beyond == [call] and not verdict.passed


def test_double_and_missing_executions_fail_the_run() -> None:
    calls = [Call("a", 1, 2, 200), Call("b", 1, 2, 200), Call("c", 1, 2, 200)]
    verdict = judge(calls, [], {"a": [0], "b": [0, 1]})
    assert verdict.duplicates == ["b"] and verdict.lost == ["c"]
    assert verdict.executions == 3 and verdict.succeeded == 3 and not verdict.passed


def test_executions_are_read_from_the_apps_paths() -> None:
    logs = [["/soak/p-1", "/soak/p-2", "/warm/1"], ["/soak/p-2", "/soak/q-3"]]
    assert executions(logs, "p") == {"p-1": [0], "p-2": [0, 1]}


EXPOSITION = """\
# TYPE tether_event_loop_lag_seconds histogram
tether_event_loop_lag_seconds_bucket{app_id="a",le="0.001"} 90.0
tether_event_loop_lag_seconds_bucket{app_id="a",le="0.01"} 98.0
tether_event_loop_lag_seconds_bucket{app_id="a",le="0.1"} 100.0
tether_event_loop_lag_seconds_bucket{app_id="a",le="+Inf"} 100.0
tether_event_loop_lag_seconds_count{app_id="a"} 100.0
"""


def test_the_p99_interpolates_within_its_bucket_as_prometheus_does() -> None:
    p99 = histogram_quantile(0.99, EXPOSITION, "tether_event_loop_lag_seconds")
    assert p99 == pytest.approx(0.01 + 0.09 * 0.5)
    assert histogram_quantile(0.5, EXPOSITION, "tether_event_loop_lag_seconds") < 0.001
    assert math.isnan(histogram_quantile(0.99, "", "tether_event_loop_lag_seconds"))
