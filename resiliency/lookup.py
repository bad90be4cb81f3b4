"""Which policies apply to a call to an app: Dapr's lookup rules, including the built-in retries."""

from __future__ import annotations

from dataclasses import dataclass, replace

from resiliency.policies import (
    DEFAULT_BREAKER_CACHE_SIZE,
    UNLIMITED,
    BackoffKind,
    BreakerPolicy,
    ResiliencyConfig,
    RetryPolicy,
    TimeoutPolicy,
)

BUILTIN_SERVICE_RETRIES = "DaprBuiltInServiceRetries"
# Dapr's built-in: constant 1s x 3, only for connection-level failures on the sidecar hop.
DEFAULT_BUILTIN_SERVICE_RETRIES = RetryPolicy(
    name=BUILTIN_SERVICE_RETRIES, kind=BackoffKind.CONSTANT, duration=1.0, max_retries=3
)
_BUILTIN_MIN_RETRIES = 3


@dataclass(frozen=True)
class AppPolicy:
    """Everything the runner needs for calls to one app; None means "no such policy"."""

    app_id: str
    timeout: TimeoutPolicy | None = None
    retry: RetryPolicy | None = None
    circuit_breaker: BreakerPolicy | None = None
    circuit_breaker_cache_size: int = DEFAULT_BREAKER_CACHE_SIZE
    builtin_retry: RetryPolicy | None = DEFAULT_BUILTIN_SERVICE_RETRIES

    @property
    def has_retries(self) -> bool:
        """Whether a call may be sent more than once, so its body must be buffered for replay."""
        return (self.retry is not None and self.retry.has_retries) or self.builtin_retry is not None

    @property
    def attempt_header(self) -> bool:
        """Whether the caller should send ``tether-attempt: N`` to the app (extension)."""
        return self.retry is not None and self.retry.attempt_header


def _default_name(kind: str, names: object) -> str | None:
    for name in (f"DefaultApp{kind}Policy", f"Default{kind}Policy"):
        if name in names:  # type: ignore[operator]
            return name
    return None


def builtin_service_retries(config: ResiliencyConfig) -> RetryPolicy:
    """Dapr's built-in service retries, or the user's override clamped to at least 3 retries."""
    override = config.retries.get(BUILTIN_SERVICE_RETRIES)
    if override is None:
        return DEFAULT_BUILTIN_SERVICE_RETRIES
    if override.max_retries != UNLIMITED and override.max_retries < _BUILTIN_MIN_RETRIES:
        return replace(override, max_retries=_BUILTIN_MIN_RETRIES)
    return override


def resolve_app_policy(config: ResiliencyConfig, app_id: str) -> AppPolicy:
    """A named ``targets.apps[app_id]`` wins whole; otherwise each kind falls back to defaults.

    Defaults are ``DefaultApp<Kind>Policy`` then ``Default<Kind>Policy`` for Kind in
    Timeout, Retry, CircuitBreaker, each looked up on its own. The built-in service
    retries apply only without a named target, and stack with the defaults.
    """
    target = config.apps.get(app_id)
    if target is not None:
        return AppPolicy(
            app_id=app_id,
            timeout=config.timeouts[target.timeout] if target.timeout else None,
            retry=config.retries[target.retry] if target.retry else None,
            circuit_breaker=(
                config.circuit_breakers[target.circuit_breaker] if target.circuit_breaker else None
            ),
            circuit_breaker_cache_size=target.circuit_breaker_cache_size,
            builtin_retry=None,
        )
    timeout = _default_name("Timeout", config.timeouts)
    retry = _default_name("Retry", config.retries)
    breaker = _default_name("CircuitBreaker", config.circuit_breakers)
    return AppPolicy(
        app_id=app_id,
        timeout=config.timeouts[timeout] if timeout else None,
        retry=config.retries[retry] if retry else None,
        circuit_breaker=config.circuit_breakers[breaker] if breaker else None,
        builtin_retry=builtin_service_retries(config),
    )
