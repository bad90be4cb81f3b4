"""Circuit breakers with sony/gobreaker's semantics on an injected clock, and their LRU cache.

States: closed (calls pass; counts cleared every ``interval`` if it is > 0; a
failure for which ``trip`` is true opens it), open (calls fail at once with
CircuitOpen until ``timeout`` passes, then half-open), half-open (up to
``max_requests`` probes; that many consecutive successes close it, any failure
opens it again, further calls fail with TooManyRequests). Every state change
starts a new generation with zeroed counts; a result reported for an older
generation is ignored, as gobreaker does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from resiliency.bounded import LruDict
from resiliency.errors import CircuitOpen, TooManyRequests
from resiliency.policies import BreakerPolicy


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"


@dataclass(frozen=True)
class Counts:
    """A snapshot of one generation's counters, named as the trip variables are."""

    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def as_variables(self) -> dict[str, int]:
        """The trip-expression variables (CEL names)."""
        return {
            "requests": self.requests,
            "totalSuccesses": self.total_successes,
            "totalFailures": self.total_failures,
            "consecutiveSuccesses": self.consecutive_successes,
            "consecutiveFailures": self.consecutive_failures,
        }


# (breaker name, old state, new state); metrics and logs hang off this.
StateChangeHook = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """One breaker. Call ``before_call`` then ``after_call`` with the generation it returned."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        on_state_change: StateChangeHook | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._counts = Counts()
        self._expiry = 0.0  # 0: no expiry (closed with interval 0, or half-open)
        self._new_generation(clock())

    @property
    def state(self) -> BreakerState:
        """The state now, after any expiry that is due."""
        return self._current(self._clock())[0]

    @property
    def counts(self) -> Counts:
        """The counters of the current generation."""
        self._current(self._clock())
        return self._counts

    def before_call(self) -> int:
        """Admit a call or raise CircuitOpen / TooManyRequests; returns the generation."""
        state, generation = self._current(self._clock())
        if state is BreakerState.OPEN:
            raise CircuitOpen()
        if state is BreakerState.HALF_OPEN and self._counts.requests >= self.policy.max_requests:
            raise TooManyRequests()
        c = self._counts
        self._counts = Counts(
            c.requests + 1,
            c.total_successes,
            c.total_failures,
            c.consecutive_successes,
            c.consecutive_failures,
        )
        return generation

    def after_call(self, generation: int, success: bool) -> None:
        """Record the result of a call admitted in ``generation``."""
        now = self._clock()
        state, current = self._current(now)
        if generation != current:
            return
        c = self._counts
        if success:
            self._counts = Counts(
                c.requests, c.total_successes + 1, c.total_failures, c.consecutive_successes + 1, 0
            )
            if (
                state is BreakerState.HALF_OPEN
                and self._counts.consecutive_successes >= self.policy.max_requests
            ):
                self._set_state(BreakerState.CLOSED, now)
            return
        self._counts = Counts(
            c.requests, c.total_successes, c.total_failures + 1, 0, c.consecutive_failures + 1
        )
        if state is BreakerState.HALF_OPEN or self.policy.trip.evaluate(
            self._counts.as_variables()
        ):
            self._set_state(BreakerState.OPEN, now)

    def _current(self, now: float) -> tuple[BreakerState, int]:
        if self._state is BreakerState.CLOSED:
            if self._expiry and self._expiry <= now:
                self._new_generation(now)
        elif self._state is BreakerState.OPEN and self._expiry <= now:
            self._set_state(BreakerState.HALF_OPEN, now)
        return self._state, self._generation

    def _set_state(self, state: BreakerState, now: float) -> None:
        previous = self._state
        self._state = state
        self._new_generation(now)
        if self._on_state_change is not None:
            self._on_state_change(self.name, previous, state)

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self._counts = Counts()
        if self._state is BreakerState.CLOSED:
            self._expiry = now + self.policy.interval if self.policy.interval > 0 else 0.0
        elif self._state is BreakerState.OPEN:
            self._expiry = now + self.policy.timeout
        else:
            self._expiry = 0.0


class BreakerCache:
    """Dapr's per-target-app LRU of breakers keyed "<appId>:<method>"; evicted ones forget state."""

    def __init__(
        self,
        policy: BreakerPolicy,
        capacity: int,
        clock: Callable[[], float],
        on_state_change: StateChangeHook | None = None,
    ) -> None:
        self.policy = policy
        self.capacity = capacity
        self._clock = clock
        self._on_state_change = on_state_change
        self._breakers: LruDict[str, CircuitBreaker] = LruDict(capacity)

    def __len__(self) -> int:
        return len(self._breakers)

    def get(self, key: str) -> CircuitBreaker:
        """The breaker for ``key``, created on first use; marks it most recently used."""
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(key, self.policy, self._clock, self._on_state_change)
            self._breakers.put(key, breaker)
        return breaker
