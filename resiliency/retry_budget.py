"""Retry budget (tether extension): retries limited to a share of recent requests.

Over a sliding ``window`` a target may see at most
``ratio * requests + min_retries_per_second * window`` retries, so an app that
fails every call gets at most about ``1 + ratio`` times its normal load instead
of ``1 + maxRetries`` times. The window is kept as ten buckets on the injected
clock, so memory stays constant at any request rate.
"""

from __future__ import annotations

from collections.abc import Callable

from resiliency.policies import RetryBudgetPolicy

_BUCKETS = 10


class RetryBudget:
    """Shared by all calls to one target under one policy; not thread-safe (one event loop)."""

    def __init__(self, policy: RetryBudgetPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._width = policy.window / _BUCKETS
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._current = self._slot()

    def _slot(self) -> int:
        return int(self._clock() / self._width)

    def _advance(self) -> int:
        slot = self._slot()
        stale = min(slot - self._current, _BUCKETS)
        for step in range(1, stale + 1):
            index = (self._current + step) % _BUCKETS
            self._requests[index] = 0
            self._retries[index] = 0
        self._current = max(slot, self._current)
        return self._current % _BUCKETS

    def record_request(self) -> None:
        """Count one original request (not a retry)."""
        self._requests[self._advance()] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is used up."""
        index = self._advance()
        allowed = (
            self.policy.ratio * sum(self._requests)
            + self.policy.min_retries_per_second * self.policy.window
        )
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[index] += 1
        return True
