"""The one async runner: retry( circuit breaker( timeout( attempt ) ) ), Dapr's order.

The caller's operation performs one attempt and returns a value; the caller's
classifier turns that value into an ``Outcome`` (success, or a failure with an
optional status code). Exceptions are only handled when ``errors`` maps them to
an Outcome; anything it returns None for propagates unchanged. When retries
run out, the caller gets the last attempt's value (e.g. the app's last status
and body) or the last attempt's exception.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from resiliency.backoff import Backoff
from resiliency.circuit_breaker import CircuitBreaker
from resiliency.errors import AttemptTimedOut, DeadlineExceeded
from resiliency.lookup import AppPolicy
from resiliency.retry_budget import RetryBudget

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    """How one attempt went, as the caller's classifier sees it."""

    success: bool
    code: int | None = None  # HTTP 100-599 or gRPC 0-16; None: no code (transport, timeout)
    retry_after: float | None = None  # seconds from Retry-After on 429/503 (extension)
    # A sidecar-hop Unavailable/Unauthenticated that never reached the app: built-in retries.
    connection_failure: bool = False
    permanent: bool = False  # never retry, e.g. a streamed response already reached the caller


SUCCESS = Outcome(success=True)
TRANSPORT_FAILURE = Outcome(success=False)


class _Failed(Exception):
    """Carries an attempt's exception and its outcome out of the timeout block."""

    def __init__(self, error: Exception, outcome: Outcome) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome = outcome


class Runner:
    """Runs one call under an AppPolicy; cheap to build, one per call."""

    def __init__(
        self,
        policy: AppPolicy,
        *,
        breaker: CircuitBreaker | None = None,
        budget: RetryBudget | None = None,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        streaming: bool = False,
    ) -> None:
        self.policy = policy
        self.breaker = breaker
        self.budget = budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        # Streamed bodies cannot be replayed: no retries of any kind (Dapr 1.17+).
        self._retry = None if streaming else policy.retry
        self._builtin = None if streaming else policy.builtin_retry
        # Nothing but (at most) the built-in retries applies: no timeout to arm, no
        # breaker or budget to consult, no policy retry to schedule (the common case).
        self._plain = (
            policy.timeout is None
            and breaker is None
            and budget is None
            and (self._retry is None or not self._retry.has_retries)
        )

    async def run(
        self,
        operation: Callable[[int], Awaitable[T]],
        classify: Callable[[T], Outcome],
        *,
        errors: Callable[[Exception], Outcome | None] | None = None,
        on_attempt: Callable[[int], None] | None = None,
    ) -> T:
        """Call ``operation(attempt)`` (attempt counts from 1) until success or no retry is left.

        Raises CircuitOpen / TooManyRequests when the breaker refuses an attempt,
        AttemptTimedOut when the last attempt timed out, DeadlineExceeded when the
        overall deadline passed during an attempt, or the last attempt's exception.
        """
        if self._plain:
            return await self._run_plain(operation, classify, errors, on_attempt)
        retry = self._retry
        backoff = Backoff(retry, self._clock, self._rng) if retry and retry.has_retries else None
        timeout = self.policy.timeout
        overall = timeout.overall if timeout else None
        deadline = self._clock() + overall if overall else None
        if self.budget is not None:
            self.budget.record_request()
        attempt = 0
        while True:
            attempt += 1
            if on_attempt is not None:
                on_attempt(attempt)
            result: tuple[T, Outcome] | None = None
            try:
                result = await self._attempt(operation, classify, errors, attempt, deadline)
                outcome = result[1]
            except _Failed as failed:
                error, outcome = failed.error, failed.outcome
            delay = self._next_delay(backoff, outcome, deadline)
            if delay is None:
                if result is None:
                    raise error
                return result[0]
            await self._sleep(delay)

    async def _run_plain(
        self,
        operation: Callable[[int], Awaitable[T]],
        classify: Callable[[T], Outcome],
        errors: Callable[[Exception], Outcome | None] | None,
        on_attempt: Callable[[int], None] | None,
    ) -> T:
        """``run`` when only the built-in retries can apply: one attempt of the
        policy (the built-in retries loop inside it), as the full path would run it."""
        if on_attempt is not None:
            on_attempt(1)
        try:
            value, _ = await self._with_builtin(operation, classify, errors, 1)
        except _Failed as failed:
            error = failed.error
        else:
            return value
        raise error

    def _next_delay(
        self, backoff: Backoff | None, outcome: Outcome, deadline: float | None
    ) -> float | None:
        """The pause before another attempt, or None to stop with this attempt's result."""
        retry = self._retry
        if outcome.success or outcome.permanent or backoff is None or retry is None:
            return None
        if not retry.matching.should_retry(outcome.code):
            return None
        delay = backoff.next_delay()
        if delay is None:
            return None
        if retry.respect_retry_after and outcome.retry_after is not None:
            delay = min(max(outcome.retry_after, 0.0), retry.max_retry_after)
        if deadline is not None and self._clock() + delay >= deadline:
            return None  # no time left for another attempt
        if self.budget is not None and not self.budget.try_spend():
            return None
        return delay

    async def _attempt(
        self,
        operation: Callable[[int], Awaitable[T]],
        classify: Callable[[T], Outcome],
        errors: Callable[[Exception], Outcome | None] | None,
        attempt: int,
        deadline: float | None,
    ) -> tuple[T, Outcome]:
        generation = self.breaker.before_call() if self.breaker is not None else 0
        success = False
        try:
            value, outcome = await self._timed(operation, classify, errors, attempt, deadline)
            success = outcome.success
            return value, outcome
        finally:
            # Exceptions and cancellation count as failures too: a half-open probe that
            # never reported would otherwise leave the breaker refusing calls for good.
            if self.breaker is not None:
                self.breaker.after_call(generation, success)

    async def _timed(
        self,
        operation: Callable[[int], Awaitable[T]],
        classify: Callable[[T], Outcome],
        errors: Callable[[Exception], Outcome | None] | None,
        attempt: int,
        deadline: float | None,
    ) -> tuple[T, Outcome]:
        timeout = self.policy.timeout
        limit = timeout.per_attempt if timeout else None
        overall_cuts = False
        if deadline is not None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceeded(timeout.overall if timeout and timeout.overall else 0.0)
            if limit is None or remaining < limit:
                limit, overall_cuts = remaining, True
        try:
            async with asyncio.timeout(limit) as scope:
                return await self._with_builtin(operation, classify, errors, attempt)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            if overall_cuts:
                assert timeout is not None and timeout.overall is not None
                raise DeadlineExceeded(timeout.overall) from exc
            assert limit is not None
            raise _Failed(AttemptTimedOut(limit), TRANSPORT_FAILURE) from exc

    async def _with_builtin(
        self,
        operation: Callable[[int], Awaitable[T]],
        classify: Callable[[T], Outcome],
        errors: Callable[[Exception], Outcome | None] | None,
        attempt: int,
    ) -> tuple[T, Outcome]:
        # Dapr's built-in service retries run inside each attempt of the user's policy.
        builtin = self._builtin
        backoff = Backoff(builtin, self._clock, self._rng) if builtin else None
        while True:
            try:
                value = await operation(attempt)
            except Exception as exc:
                outcome = errors(exc) if errors is not None else None
                if outcome is None:
                    raise
                failure = _Failed(exc, outcome)
                if not self._builtin_applies(outcome):
                    raise failure from exc
                delay = backoff.next_delay() if backoff else None
                if delay is None:
                    raise failure from exc
                await self._sleep(delay)
                continue
            outcome = classify(value)
            if not self._builtin_applies(outcome):
                return value, outcome
            delay = backoff.next_delay() if backoff else None
            if delay is None:
                return value, outcome
            await self._sleep(delay)

    def _builtin_applies(self, outcome: Outcome) -> bool:
        return self._builtin is not None and outcome.connection_failure and not outcome.success
