"""Delays between attempts: Dapr's constant and exponential (cenkalti/backoff v4) sequences.

One ``Backoff`` serves one call. ``next_delay()`` gives the pause before the
next retry, or None when the policy allows no more retries.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from resiliency.policies import UNLIMITED, BackoffKind, RetryPolicy

# backoff v4 defaults that Dapr does not expose (only maxInterval is configurable).
INITIAL_INTERVAL = 0.5
MULTIPLIER = 1.5
RANDOMIZATION_FACTOR = 0.5
MAX_ELAPSED_TIME = 15 * 60.0


class Backoff:
    """The retry schedule of one call under ``policy``, on an injected clock and Random."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], rng: random.Random) -> None:
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._retries = 0
        self._started = clock()
        self._interval = INITIAL_INTERVAL

    @property
    def retries(self) -> int:
        """How many delays were handed out so far."""
        return self._retries

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when retries are used up."""
        policy = self._policy
        if policy.max_retries != UNLIMITED and self._retries >= policy.max_retries:
            return None
        delay: float | None
        if policy.kind is BackoffKind.CONSTANT:
            delay = self._rng.uniform(0.0, policy.duration) if policy.jitter else policy.duration
        else:
            delay = self._exponential()
        if delay is None:
            return None
        self._retries += 1
        return delay

    def _exponential(self) -> float | None:
        interval = self._interval
        if self._policy.jitter:
            # Full jitter (AWS style): anywhere between 0 and the capped interval.
            delay = self._rng.uniform(0.0, interval)
        else:
            spread = RANDOMIZATION_FACTOR * interval
            delay = interval - spread + self._rng.random() * 2 * spread
        cap = self._policy.max_interval
        self._interval = cap if interval >= cap / MULTIPLIER else interval * MULTIPLIER
        # As backoff v4: stop once the next pause would end past the elapsed-time limit.
        if self._clock() - self._started + delay > MAX_ELAPSED_TIME:
            return None
        return delay
