"""Choosing one instance of an app per call: power of two choices over a peak-EWMA cost.

Each pick draws two distinct instances at random and takes the cheaper, where
``cost = (outstanding calls + 1) * latency estimate`` (Linkerd's and Finagle's
peak-EWMA). With equal latencies that is Envoy's least-request P2C: the one with fewer
calls in flight wins; equal costs go to the first drawn, which is random.

The latency estimate, per instance, in seconds:

- A sample above the estimate replaces it at once (peak), so a slowing instance is
  avoided at once.
- A lower sample pulls it down by ``1 - exp(-dt / decay)``, dt being the time since the
  estimate last changed, with ``decay`` = 10 s (Linkerd's default): a burst of fast
  answers cannot erase a slow one instantly.
- While no sample arrives the estimate decays towards zero with the same time constant,
  so an instance avoided for being slow is tried again after a while and re-measured.
- It never counts below ``floor`` (1 ms, Linkerd's floor), so calls in flight still
  separate instances whose latencies are too small to matter.
- A new instance starts at zero (optimistic): it gets its first calls at once and its
  first answer sets the estimate.
- A failed call counts as a sample of at least ``failure_penalty`` (1 s): a refused
  connection fails fast and must not make a broken instance look like the fastest.

Slow start (Envoy's, linear, ``aggression`` 1.0): an instance that joins an app that
already had instances has weight ``max(min_weight, t / window)`` for its first
``window`` seconds (t = time since it joined). Envoy has no default window (slow start
is off until one is set); tether uses 10 s with Envoy's default ``min_weight`` of 10%.
P2C compares costs and has no weights, so the weight acts as an admission chance: when
a warming instance wins a comparison it is used with probability ``weight``, else the
other candidate is. So it gets some traffic at once, even with one call at a time and
two instances, and its share grows to a full one over the window. Instances present
when the app is first resolved start warm: slow start cannot help when all are new.

Instances to skip (ejected by the outlier detector) are passed to ``pick``. If every
instance is skipped the pick is made among all of them (Envoy's panic mode): a call to
a possibly bad instance beats failing a call that has nowhere else to go; ``panics``
counts those picks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from proxy.core.errors import TetherError
from proxy.discovery.registry import Endpoint


class NoInstances(TetherError):
    """The app has no instances to balance over."""


@dataclass(frozen=True)
class BalancerPolicy:
    decay: float = 10.0  # seconds, the EWMA time constant
    floor: float = 0.001  # seconds, the least latency a cost uses
    failure_penalty: float = 1.0  # seconds, the least sample a failed call counts as
    slow_start_window: float = 10.0  # seconds; 0 turns slow start off
    min_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.decay <= 0 or self.floor <= 0:
            raise ValueError("decay and floor must be positive")
        if self.failure_penalty < 0 or self.slow_start_window < 0:
            raise ValueError("failure_penalty and slow_start_window must not be negative")
        if not 0 < self.min_weight <= 1:
            raise ValueError("min_weight must be in (0, 1]")


@dataclass
class _Stats:
    joined: float
    warm: bool  # true: no slow start for this instance
    estimate: float = 0.0  # seconds, as of ``updated``
    updated: float = 0.0
    outstanding: int = 0


class Balancer:
    """The instances of one app and their load; not thread-safe (one event loop)."""

    def __init__(
        self,
        policy: BalancerPolicy | None = None,
        *,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.policy = policy or BalancerPolicy()
        self._clock = clock
        self._rng = rng
        self._stats: dict[Endpoint, _Stats] = {}
        self._order: tuple[Endpoint, ...] = ()
        self.panics = 0

    @property
    def instances(self) -> tuple[Endpoint, ...]:
        return self._order

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the instance set; instances that stay keep their load and latency."""
        now = self._clock()
        first_set = not self._stats or self.policy.slow_start_window == 0
        stats: dict[Endpoint, _Stats] = {}
        for endpoint in endpoints:
            if endpoint not in stats:
                stats[endpoint] = self._stats.get(endpoint) or _Stats(
                    joined=now, warm=first_set, updated=now
                )
        self._stats = stats
        self._order = tuple(stats)

    def rejoin(self, endpoint: Endpoint) -> None:
        """``endpoint`` is back after an ejection: forget its latency (the failures that
        got it ejected would keep it from winning any pick for a long while) and warm
        it up again like a new instance. Calls still in flight stay counted."""
        stats = self._stats.get(endpoint)
        if stats is None:
            return
        now = self._clock()
        fresh = _Stats(joined=now, warm=self.policy.slow_start_window == 0, updated=now)
        fresh.outstanding = stats.outstanding
        self._stats[endpoint] = fresh

    def pick(self, skip: Collection[Endpoint] = ()) -> Endpoint:
        """One instance for the next call; raises NoInstances if there are none."""
        candidates = self._order
        if skip:
            candidates = tuple(e for e in self._order if e not in skip)
            if not candidates:
                if not self._order:
                    raise NoInstances("no instances")
                self.panics += 1
                candidates = self._order
        count = len(candidates)
        if count == 0:
            raise NoInstances("no instances")
        if count == 1:
            return candidates[0]
        rng = self._rng
        first = rng.randrange(count)
        second = rng.randrange(count - 1)
        if second >= first:
            second += 1
        a, b = candidates[first], candidates[second]
        now = self._clock()
        if self._cost(self._stats[b], now) < self._cost(self._stats[a], now):
            a, b = b, a
        weight = self._weight(self._stats[a], now)
        if weight < 1.0 and rng.random() >= weight:
            return b
        return a

    def started(self, endpoint: Endpoint) -> None:
        """A call to ``endpoint`` began (call after ``pick``)."""
        stats = self._stats.get(endpoint)
        if stats is not None:
            stats.outstanding += 1

    def finished(self, endpoint: Endpoint, latency: float, ok: bool) -> None:
        """A call ended after ``latency`` seconds; ``ok`` false for transport failures."""
        stats = self._stats.get(endpoint)
        if stats is None:
            return  # removed while the call was in flight
        # Clamped: an instance removed and re-added mid-call has fresh stats.
        stats.outstanding = max(0, stats.outstanding - 1)
        sample = latency if ok else max(latency, self.policy.failure_penalty)
        now = self._clock()
        if sample > stats.estimate:
            stats.estimate = sample
        else:
            kept = math.exp(-(now - stats.updated) / self.policy.decay)
            stats.estimate = stats.estimate * kept + sample * (1.0 - kept)
        stats.updated = now

    def outstanding(self, endpoint: Endpoint) -> int:
        stats = self._stats.get(endpoint)
        return stats.outstanding if stats else 0

    def cost(self, endpoint: Endpoint) -> float:
        """The cost a pick compares now (for tests, metrics and the span)."""
        return self._cost(self._stats[endpoint], self._clock())

    def weight(self, endpoint: Endpoint) -> float:
        """The slow-start weight now, 1.0 once warm."""
        return self._weight(self._stats[endpoint], self._clock())

    def _cost(self, stats: _Stats, now: float) -> float:
        estimate = stats.estimate * math.exp(-(now - stats.updated) / self.policy.decay)
        return (stats.outstanding + 1) * max(self.policy.floor, estimate)

    def _weight(self, stats: _Stats, now: float) -> float:
        if stats.warm:
            return 1.0
        window = self.policy.slow_start_window
        elapsed = now - stats.joined
        if elapsed >= window:
            stats.warm = True  # stays warm: no more arithmetic on the hot path
            return 1.0
        return max(self.policy.min_weight, elapsed / window)
