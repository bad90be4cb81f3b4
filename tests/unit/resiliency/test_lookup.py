from __future__ import annotations

from resiliency.lookup import DEFAULT_BUILTIN_SERVICE_RETRIES, resolve_app_policy
from resiliency.policies import AppTarget, ResiliencyConfig, RetryPolicy, TimeoutPolicy

from .fakes import breaker_policy


def config(**kwargs: object) -> ResiliencyConfig:
    return ResiliencyConfig(**kwargs)  # type: ignore[arg-type]


def test_no_config_has_only_builtin_retries() -> None:
    policy = resolve_app_policy(ResiliencyConfig(), "orders")
    assert policy.retry is None and policy.timeout is None and policy.circuit_breaker is None
    assert policy.builtin_retry == DEFAULT_BUILTIN_SERVICE_RETRIES
    assert policy.has_retries


def test_named_target_wins_and_disables_builtin() -> None:
    retry = RetryPolicy("r", max_retries=0)
    default = RetryPolicy("DefaultRetryPolicy", max_retries=9)
    cfg = config(
        retries={"r": retry, "DefaultRetryPolicy": default},
        timeouts={"DefaultTimeoutPolicy": TimeoutPolicy("DefaultTimeoutPolicy", 1.0)},
        apps={"orders": AppTarget(retry="r", circuit_breaker_cache_size=7)},
    )
    policy = resolve_app_policy(cfg, "orders")
    assert policy.retry is retry and policy.timeout is None
    assert policy.builtin_retry is None and not policy.has_retries
    assert policy.circuit_breaker_cache_size == 7


def test_defaults_looked_up_per_kind() -> None:
    app_retry = RetryPolicy("DefaultAppRetryPolicy", max_retries=1)
    cfg = config(
        retries={"DefaultAppRetryPolicy": app_retry, "DefaultRetryPolicy": RetryPolicy("x")},
        timeouts={"DefaultTimeoutPolicy": TimeoutPolicy("DefaultTimeoutPolicy", 2.0)},
        circuit_breakers={"DefaultAppCircuitBreakerPolicy": breaker_policy()},
    )
    policy = resolve_app_policy(cfg, "orders")
    assert policy.retry is app_retry
    assert policy.timeout is not None and policy.timeout.per_attempt == 2.0
    assert policy.circuit_breaker is not None
    assert policy.builtin_retry == DEFAULT_BUILTIN_SERVICE_RETRIES  # stacks with defaults


def test_builtin_override_is_clamped() -> None:
    override = RetryPolicy("DaprBuiltInServiceRetries", duration=0.2, max_retries=1)
    policy = resolve_app_policy(config(retries={override.name: override}), "orders")
    assert policy.builtin_retry is not None
    assert (policy.builtin_retry.duration, policy.builtin_retry.max_retries) == (0.2, 3)
