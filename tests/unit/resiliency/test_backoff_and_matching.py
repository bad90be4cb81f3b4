from __future__ import annotations

import random

import pytest

from resiliency.backoff import Backoff
from resiliency.errors import StatusRangeError
from resiliency.matching import HTTP_CODES, StatusMatching, parse_status_ranges
from resiliency.policies import BackoffKind, RetryPolicy

from .fakes import FakeClock


def delays(policy: RetryPolicy, limit: int = 50) -> list[float]:
    backoff = Backoff(policy, FakeClock(), random.Random(7))
    result: list[float] = []
    while len(result) < limit and (delay := backoff.next_delay()) is not None:
        result.append(delay)
    return result


def test_constant_and_max_retries() -> None:
    assert delays(RetryPolicy("r", duration=0.05, max_retries=3)) == [0.05] * 3
    assert delays(RetryPolicy("r", max_retries=0)) == []
    assert len(delays(RetryPolicy("r", max_retries=-1))) == 50


def test_exponential_bounds() -> None:
    policy = RetryPolicy("r", kind=BackoffKind.EXPONENTIAL, max_interval=3.0, max_retries=8)
    result = delays(policy)
    intervals = [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.0, 3.0, 3.0]
    assert len(result) == 8
    for delay, interval in zip(result, intervals, strict=True):
        assert interval * 0.5 <= delay <= interval * 1.5


def test_exponential_stops_after_max_elapsed_time() -> None:
    clock = FakeClock()
    backoff = Backoff(RetryPolicy("r", kind=BackoffKind.EXPONENTIAL), clock, random.Random(1))
    clock.now += 15 * 60
    assert backoff.next_delay() is None


def test_full_jitter_stays_below_interval() -> None:
    result = delays(RetryPolicy("r", duration=2.0, max_retries=20, jitter=True))
    assert all(0.0 <= d <= 2.0 for d in result) and len(set(result)) > 1


def test_status_ranges() -> None:
    assert parse_status_ranges("500-599,429", HTTP_CODES) == ((500, 599), (429, 429))
    assert parse_status_ranges("", HTTP_CODES) == ()
    for text, message in [
        ("600", '"600" is outside 100-599'),
        ("599-500", '"599-500" starts after it ends'),
        ("abc", '"abc" is not a status code or a range such as 500-599'),
        ("500,,501", '"500,,501" has an empty entry'),
    ]:
        with pytest.raises(StatusRangeError) as info:
            parse_status_ranges(text, HTTP_CODES)
        assert str(info.value) == message


def test_matching() -> None:
    matching = StatusMatching(http=((500, 599),), grpc=((14, 14),))
    assert matching.should_retry(None)
    assert matching.should_retry(503)
    assert not matching.should_retry(404)
    assert matching.should_retry(14)
    assert not matching.should_retry(5)
    assert not matching.should_retry(700)
    everything = StatusMatching()
    assert everything.should_retry(404) and everything.should_retry(3)
