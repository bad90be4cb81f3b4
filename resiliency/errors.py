"""Exceptions of the resiliency package, one tree so callers can catch exactly what they mean."""

from __future__ import annotations


class ResiliencyError(Exception):
    """Base class for every error the resiliency package raises on purpose."""


class StatusRangeError(ResiliencyError, ValueError):
    """A matching list such as "500-599,429" has a malformed or out-of-range entry."""


class TripExpressionError(ResiliencyError, ValueError):
    """A trip expression is outside tether's CEL subset or does not give true/false."""


class ConfigInvalid(ResiliencyError):
    """Resiliency documents had problems; ``problems`` holds each "FILE: path: message"."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class BreakerRejected(ResiliencyError):
    """A circuit breaker refused the call before it started; such errors are never retried."""


class CircuitOpen(BreakerRejected):
    """The circuit breaker is open (Dapr's "circuit breaker is open")."""

    def __init__(self) -> None:
        super().__init__("circuit breaker is open")


class TooManyRequests(BreakerRejected):
    """The half-open breaker already admitted its maxRequests probes ("too many requests")."""

    def __init__(self) -> None:
        super().__init__("too many requests")


class AttemptTimedOut(ResiliencyError):
    """One attempt ran past the per-attempt timeout and was cancelled."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timeout after {seconds:g}s")
        self.seconds = seconds


class DeadlineExceeded(ResiliencyError):
    """The overall deadline across all attempts passed (tether extension)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"overall deadline of {seconds:g}s exceeded")
        self.seconds = seconds
