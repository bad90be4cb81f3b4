"""Renewal timing (certs.renewal) with an injected clock: when to renew, how to retry,
when the certificate stops counting as healthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certs.renewal import (
    RETRY_INTERVAL,
    SHORTEST_RETRY,
    CertificateHealth,
    Lifetime,
    next_attempt,
)

ISSUED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=15)
DAPR = Lifetime(ISSUED - SKEW, ISSUED + timedelta(hours=24))  # Sentry's defaults


def test_renewal_starts_at_half_the_lifetime_counted_from_not_before() -> None:
    # Dapr: NotBefore + lifetime/2, about 11 h 52 min after issue with 15 min of skew.
    assert DAPR.renew_at() == ISSUED + timedelta(hours=11, minutes=52, seconds=30)
    assert next_attempt(DAPR, 0, ISSUED) == timedelta(hours=11, minutes=52, seconds=30).seconds


def test_a_certificate_past_its_half_life_is_renewed_at_once() -> None:
    assert next_attempt(DAPR, 0, ISSUED + timedelta(hours=20)) == 0.0


def test_failures_back_off_up_to_dapr_s_ten_seconds() -> None:
    now = DAPR.renew_at()
    delays = [next_attempt(DAPR, failures, now) for failures in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, RETRY_INTERVAL, RETRY_INTERVAL, RETRY_INTERVAL]


def test_the_backoff_never_exceeds_a_quarter_of_the_time_left() -> None:
    short = Lifetime(ISSUED, ISSUED + timedelta(seconds=8))
    now = ISSUED + timedelta(seconds=6)  # 2 s left
    assert next_attempt(short, 5, now) == 0.5
    assert next_attempt(short, 5, ISSUED + timedelta(seconds=7.99)) == SHORTEST_RETRY


def test_retries_go_on_after_expiry() -> None:
    assert next_attempt(DAPR, 9, DAPR.not_after + timedelta(hours=1)) == RETRY_INTERVAL


def test_healthy_until_three_quarters_of_the_lifetime_with_renewal_failing() -> None:
    short = Lifetime(ISSUED, ISSUED + timedelta(seconds=8))
    assert short.health(ISSUED, 1) is CertificateHealth.GOOD
    assert short.health(ISSUED + timedelta(seconds=5.99), 1) is CertificateHealth.GOOD
    assert short.health(ISSUED + timedelta(seconds=6), 1) is CertificateHealth.RENEWAL_FAILING
    assert short.health(ISSUED + timedelta(seconds=7.99), 3) is CertificateHealth.RENEWAL_FAILING


def test_a_renewal_that_is_slow_but_has_not_failed_is_no_fault() -> None:
    short = Lifetime(ISSUED, ISSUED + timedelta(seconds=8))
    assert short.health(ISSUED + timedelta(seconds=7.99), 0) is CertificateHealth.GOOD


def test_an_expired_certificate_is_never_healthy() -> None:
    short = Lifetime(ISSUED, ISSUED + timedelta(seconds=8))
    for later in (0, 1, 3600, 10**7):
        now = short.not_after + timedelta(seconds=later)
        assert short.health(now, 0) is CertificateHealth.EXPIRED


def test_the_unhealthy_mark_leaves_a_quarter_of_the_lifetime() -> None:
    # At Dapr's defaults: 6 h of retries after renewal starts, 6 h to react before expiry.
    assert DAPR.not_after - DAPR.unhealthy_at() == DAPR.length / 4
    assert DAPR.unhealthy_at() - DAPR.renew_at() == DAPR.length / 4


def test_the_next_change_of_health() -> None:
    short = Lifetime(ISSUED, ISSUED + timedelta(seconds=8))
    assert short.next_change(ISSUED) == 6.0
    assert short.next_change(ISSUED + timedelta(seconds=7)) == 1.0
    assert short.next_change(ISSUED + timedelta(seconds=8)) is None
