"""When to renew a workload certificate, and whether the one held is still good
enough to call this sidecar healthy: pure timing on plain values, no clock of its own.

- Renewal starts at half the certificate's lifetime, Dapr's rule (dapr/kit
  ``crypto/spiffe``: NotBefore + (NotAfter - NotBefore) / 2; with Dapr's 24 h and
  15 min of clock skew that is about 11 h 52 min after issue).
- A failed renewal is retried with a backoff from 1 s doubling up to Dapr's fixed
  10 s, but never more than a quarter of the time left, so even a certificate of a
  few seconds gets several tries before it expires.
- The certificate is reported unhealthy once three quarters of its lifetime have
  passed without a renewal and at least one attempt has failed: a quarter of the
  lifetime of failed attempts (6 h, some 2000 tries, at the default 24 h) is a
  persistent fault, and the remaining quarter (6 h) leaves time to restart the
  sidecar or repair the CA before calls fail. A renewal that is merely slow (a busy
  machine, a first attempt still running) is not a fault. An expired certificate is
  always unhealthy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

RETRY_INTERVAL = 10.0  # seconds: Dapr retries a failed renewal every 10 s
FIRST_RETRY = 1.0
SHORTEST_RETRY = 0.05  # never spin, however little time is left
UNHEALTHY_AFTER = 0.75  # of the lifetime passed without a renewal


class CertificateHealth(enum.Enum):
    GOOD = "good"
    RENEWAL_FAILING = "renewal failing"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Lifetime:
    """A certificate's validity window (both ends timezone-aware)."""

    not_before: datetime
    not_after: datetime

    @property
    def length(self) -> timedelta:
        return self.not_after - self.not_before

    def renew_at(self) -> datetime:
        return self.not_before + self.length / 2

    def unhealthy_at(self) -> datetime:
        return self.not_before + self.length * UNHEALTHY_AFTER

    def health(self, now: datetime, failures: int) -> CertificateHealth:
        """``failures``: renewal attempts that failed since the last success."""
        if now >= self.not_after:
            return CertificateHealth.EXPIRED
        if failures > 0 and now >= self.unhealthy_at():
            return CertificateHealth.RENEWAL_FAILING
        return CertificateHealth.GOOD

    def next_change(self, now: datetime) -> float | None:
        """Seconds until ``health`` next changes on its own (None: never again)."""
        for moment in (self.unhealthy_at(), self.not_after):
            if moment > now:
                return (moment - now).total_seconds()
        return None


def next_attempt(lifetime: Lifetime, failures: int, now: datetime) -> float:
    """Seconds until the next renewal attempt: the half-life for a fresh certificate,
    a bounded backoff after ``failures`` failed attempts in a row."""
    if failures <= 0:
        return max((lifetime.renew_at() - now).total_seconds(), 0.0)
    backoff = min(RETRY_INTERVAL, FIRST_RETRY * 2.0 ** min(failures - 1, 16))
    left = (lifetime.not_after - now).total_seconds()
    if left > 0:
        backoff = min(backoff, left / 4)
    return max(backoff, SHORTEST_RETRY)
