"""Short human-readable lines describing a loaded config, for ``tether resiliency check``."""

from __future__ import annotations

from resiliency.policies import ResiliencyConfig, RetryPolicy, TimeoutPolicy


def _retry(policy: RetryPolicy) -> str:
    count = "unlimited" if policy.max_retries < 0 else str(policy.max_retries)
    if policy.kind == "constant":
        shape = f"constant {policy.duration:g}s"
    else:
        shape = f"exponential up to {policy.max_interval:g}s"
    return f"retry {policy.name}: {shape}, {count} retries"


def _timeout(policy: TimeoutPolicy) -> str:
    parts = []
    if policy.per_attempt is not None:
        parts.append(f"{policy.per_attempt:g}s per attempt")
    if policy.overall is not None:
        parts.append(f"{policy.overall:g}s overall")
    return f"timeout {policy.name}: {', '.join(parts) or 'none'}"


def summarize(config: ResiliencyConfig) -> list[str]:
    """One line per resource, policy and app target."""
    lines = [f"resources: {', '.join(config.resource_names) or 'none'}"]
    lines += [_timeout(policy) for policy in config.timeouts.values()]
    lines += [_retry(policy) for policy in config.retries.values()]
    lines += [
        f"circuit breaker {b.name}: trip {b.trip.source!r}, open for {b.timeout:g}s"
        for b in config.circuit_breakers.values()
    ]
    for app_id, target in config.apps.items():
        used = [
            f"{kind} {name}"
            for kind, name in (
                ("timeout", target.timeout),
                ("retry", target.retry),
                ("circuit breaker", target.circuit_breaker),
            )
            if name
        ]
        lines.append(f"app {app_id}: {', '.join(used) or 'no policies'}")
    return lines
