"""Validated, immutable policies: what the loader produces and the runtime objects consume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from resiliency.matching import StatusMatching
from resiliency.trip import TripExpression

UNLIMITED = -1
DEFAULT_DURATION = 5.0
DEFAULT_MAX_INTERVAL = 60.0
DEFAULT_MAX_RETRY_AFTER = 30.0
DEFAULT_BREAKER_TIMEOUT = 60.0
DEFAULT_BREAKER_CACHE_SIZE = 100

K = TypeVar("K")
V = TypeVar("V")


class BackoffKind(StrEnum):
    CONSTANT = "constant"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True)
class TimeoutPolicy:
    """A named timeout. ``per_attempt`` is Dapr's; ``overall`` spans all attempts (extension)."""

    name: str
    per_attempt: float | None
    overall: float | None = None


@dataclass(frozen=True)
class RetryBudgetPolicy:
    """Retries allowed in ``window``: ``ratio`` of requests plus ``min_retries_per_second``."""

    ratio: float = 0.2
    min_retries_per_second: float = 3.0
    window: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """A named retry policy; the fields after ``matching`` are tether extensions, off by default."""

    name: str
    kind: BackoffKind = BackoffKind.CONSTANT
    duration: float = DEFAULT_DURATION
    max_interval: float = DEFAULT_MAX_INTERVAL
    max_retries: int = UNLIMITED
    matching: StatusMatching = field(default_factory=StatusMatching)
    jitter: bool = False
    respect_retry_after: bool = False
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    budget: RetryBudgetPolicy | None = None
    attempt_header: bool = False

    @property
    def has_retries(self) -> bool:
        """Dapr's ``HasRetries``: any value but 0 may retry."""
        return self.max_retries != 0


@dataclass(frozen=True)
class BreakerPolicy:
    """A named circuit breaker with Dapr's zero-value rules already applied."""

    name: str
    max_requests: int
    interval: float  # 0: closed-state counts are never cleared
    timeout: float
    trip: TripExpression


@dataclass(frozen=True)
class AppTarget:
    """``spec.targets.apps.<appId>``: policy names, all checked to exist."""

    timeout: str | None = None
    retry: str | None = None
    circuit_breaker: str | None = None
    circuit_breaker_cache_size: int = DEFAULT_BREAKER_CACHE_SIZE


def frozen_map(items: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only copy, so a shared config snapshot cannot be changed by accident."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class ResiliencyConfig:
    """Every loaded Resiliency document merged: policies by name and app targets by app ID."""

    timeouts: Mapping[str, TimeoutPolicy] = field(default_factory=frozen_map)
    retries: Mapping[str, RetryPolicy] = field(default_factory=frozen_map)
    circuit_breakers: Mapping[str, BreakerPolicy] = field(default_factory=frozen_map)
    apps: Mapping[str, AppTarget] = field(default_factory=frozen_map)
    resource_names: tuple[str, ...] = ()
