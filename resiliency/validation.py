"""Check one raw Resiliency document (the dict PyYAML gives) and build typed policies from it.

Every problem goes into the loader's ``Problems`` collector (field path and what
is wrong) so all of them are reported at once; nothing here raises on bad input.
Cross-document checks (duplicate names, references from targets to policies) are
the loader's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resiliency.errors import StatusRangeError, TripExpressionError
from resiliency.matching import (
    GRPC_CODES,
    HTTP_CODES,
    StatusMatching,
    StatusRanges,
    parse_status_ranges,
)
from resiliency.policies import (
    DEFAULT_BREAKER_CACHE_SIZE,
    DEFAULT_BREAKER_TIMEOUT,
    DEFAULT_DURATION,
    DEFAULT_MAX_INTERVAL,
    DEFAULT_MAX_RETRY_AFTER,
    UNLIMITED,
    AppTarget,
    BackoffKind,
    BreakerPolicy,
    RetryBudgetPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from resiliency.trip import compile_trip
from yamlcheck import Problems, show, type_name

API_VERSION = "dapr.io/v1alpha1"
KIND = "Resiliency"

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "scopes", "spec")
_METADATA_FIELDS = ("name", "namespace", "labels", "annotations")
_SPEC_FIELDS = ("policies", "targets")
_POLICY_KINDS = ("timeouts", "retries", "circuitBreakers")
_TARGET_KINDS = ("apps", "actors", "components")
_TIMEOUT_FIELDS = ("perAttempt", "overall")
_RETRY_FIELDS = (
    "policy",
    "duration",
    "maxInterval",
    "maxRetries",
    "matching",
    # tether extensions
    "jitter",
    "respectRetryAfter",
    "maxRetryAfter",
    "budget",
    "attemptHeader",
)
_MATCHING_FIELDS = ("httpStatusCodes", "gRPCStatusCodes")
_BUDGET_FIELDS = ("ratio", "minRetriesPerSecond", "window")
_BREAKER_FIELDS = ("maxRequests", "interval", "timeout", "trip")
_APP_FIELDS = ("timeout", "retry", "circuitBreaker", "circuitBreakerCacheSize")
_UNSUPPORTED_TARGETS = {
    "actors": "actor targets are not supported by tether (it has no actors)",
    "components": "component targets are not supported by tether (it has no components)",
}


@dataclass(frozen=True)
class ParsedDocument:
    """One valid Resiliency document, before merging with the others."""

    name: str
    scopes: tuple[str, ...]
    timeouts: Mapping[str, TimeoutPolicy]
    retries: Mapping[str, RetryPolicy]
    circuit_breakers: Mapping[str, BreakerPolicy]
    apps: Mapping[str, AppTarget]


def validate_document(document: Mapping[str, Any], check: Problems) -> ParsedDocument | None:
    """Check a ``kind: Resiliency`` document; return it typed, or None after adding problems."""
    before = len(check)
    top = check.mapping("", dict(document), _TOP_FIELDS) or {}
    check.literal(top, "apiVersion", API_VERSION)
    name = _metadata(check, top.get("metadata"))
    scopes = _scopes(check, top.get("scopes"))
    timeouts: dict[str, TimeoutPolicy] = {}
    retries: dict[str, RetryPolicy] = {}
    breakers: dict[str, BreakerPolicy] = {}
    apps: dict[str, AppTarget] = {}
    if "spec" not in top:
        check.add("spec", "missing")
    else:
        spec = check.mapping("spec", top["spec"], _SPEC_FIELDS) or {}
        if spec.get("policies") is not None:
            _policies(check, spec["policies"], timeouts, retries, breakers)
        if spec.get("targets") is not None:
            _targets(check, spec["targets"], apps)
    if len(check) != before or name is None:
        return None
    return ParsedDocument(name, scopes, timeouts, retries, breakers, apps)


def _duration(check: Problems, path: str, value: object) -> float | None:
    # Dapr decodes Resiliency durations as Go durations, then as whole milliseconds.
    return check.duration(path, value, bare_milliseconds=True)


def _metadata(check: Problems, value: object) -> str | None:
    if value is None:
        check.add("metadata.name", "missing")
        return None
    metadata = check.mapping("metadata", value, _METADATA_FIELDS)
    if metadata is None:
        return None
    if "name" not in metadata:
        check.add("metadata.name", "missing")
        return None
    for key in ("labels", "annotations"):
        if key in metadata:
            check.mapping(f"metadata.{key}", metadata[key], None)
    if "namespace" in metadata:
        check.name("metadata.namespace", metadata["namespace"])
    return check.name("metadata.name", metadata["name"])


def _scopes(check: Problems, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        check.add("scopes", f"expected a list of app IDs, got {type_name(value)}")
        return ()
    scopes = []
    for index, item in enumerate(value):
        scope = check.name(f"scopes[{index}]", item)
        if scope is not None:
            scopes.append(scope)
    return tuple(scopes)


def _named(check: Problems, path: str, value: object) -> dict[str, Any]:
    """A mapping from policy names (any string) to their definitions."""
    return check.mapping(path, value, None) or {}


def _policies(
    check: Problems,
    value: object,
    timeouts: dict[str, TimeoutPolicy],
    retries: dict[str, RetryPolicy],
    breakers: dict[str, BreakerPolicy],
) -> None:
    policies = check.mapping("spec.policies", value, _POLICY_KINDS) or {}
    if policies.get("timeouts") is not None:
        for name, item in _named(check, "spec.policies.timeouts", policies["timeouts"]).items():
            timeout = _timeout(check, f"spec.policies.timeouts.{name}", name, item)
            if timeout is not None:
                timeouts[name] = timeout
    if policies.get("retries") is not None:
        for name, item in _named(check, "spec.policies.retries", policies["retries"]).items():
            retry = _retry(check, f"spec.policies.retries.{name}", name, item)
            if retry is not None:
                retries[name] = retry
    if policies.get("circuitBreakers") is not None:
        items = _named(check, "spec.policies.circuitBreakers", policies["circuitBreakers"])
        for name, item in items.items():
            breaker = _breaker(check, f"spec.policies.circuitBreakers.{name}", name, item)
            if breaker is not None:
                breakers[name] = breaker


def _timeout(check: Problems, path: str, name: str, value: object) -> TimeoutPolicy | None:
    if not isinstance(value, dict):
        # Dapr's form: a plain duration, applied to each attempt.
        seconds = _duration(check, path, value)
        return None if seconds is None else TimeoutPolicy(name, seconds or None)
    fields = check.mapping(path, value, _TIMEOUT_FIELDS)
    if fields is None:
        return None
    if not fields:
        check.add(path, 'needs "perAttempt", "overall" or both')
        return None
    before = len(check)
    per_attempt = overall = None
    if "perAttempt" in fields:
        per_attempt = _duration(check, f"{path}.perAttempt", fields["perAttempt"])
    if "overall" in fields:
        overall = _duration(check, f"{path}.overall", fields["overall"])
    if len(check) != before:
        return None
    # A zero duration means "no limit", as Dapr treats a zero timeout.
    return TimeoutPolicy(name, per_attempt or None, overall or None)


def _retry(check: Problems, path: str, name: str, value: object) -> RetryPolicy | None:
    fields = check.mapping(path, value, _RETRY_FIELDS)
    if fields is None:
        return None
    before = len(check)
    kind = BackoffKind.CONSTANT
    if "policy" in fields:
        raw = fields["policy"]
        if raw in (BackoffKind.CONSTANT.value, BackoffKind.EXPONENTIAL.value):
            kind = BackoffKind(raw)
        else:
            check.add(f"{path}.policy", f'must be "constant" or "exponential", not {show(raw)}')
    duration = _optional_duration(check, path, fields, "duration", DEFAULT_DURATION)
    max_interval = _optional_duration(check, path, fields, "maxInterval", DEFAULT_MAX_INTERVAL)
    max_retries: int | None = UNLIMITED
    if "maxRetries" in fields:
        max_retries = check.integer(f"{path}.maxRetries", fields["maxRetries"], -1, " (unlimited)")
    matching = _matching(check, f"{path}.matching", fields.get("matching"))
    flags = {
        key: check.boolean(f"{path}.{key}", fields[key]) or False
        for key in ("jitter", "respectRetryAfter", "attemptHeader")
        if key in fields
    }
    max_retry_after = _optional_duration(
        check, path, fields, "maxRetryAfter", DEFAULT_MAX_RETRY_AFTER
    )
    budget = _budget(check, f"{path}.budget", fields["budget"]) if "budget" in fields else None
    if len(check) != before:
        return None
    assert duration is not None and max_interval is not None and max_retries is not None
    assert matching is not None and max_retry_after is not None
    return RetryPolicy(
        name=name,
        kind=kind,
        duration=duration,
        max_interval=max_interval,
        max_retries=max_retries,
        matching=matching,
        jitter=flags.get("jitter", False),
        respect_retry_after=flags.get("respectRetryAfter", False),
        max_retry_after=max_retry_after,
        budget=budget,
        attempt_header=flags.get("attemptHeader", False),
    )


def _optional_duration(
    check: Problems, path: str, fields: dict[str, Any], key: str, default: float
) -> float | None:
    if key not in fields:
        return default
    return _duration(check, f"{path}.{key}", fields[key])


def _matching(check: Problems, path: str, value: object) -> StatusMatching | None:
    if value is None:
        return StatusMatching()
    fields = check.mapping(path, value, _MATCHING_FIELDS)
    if fields is None:
        return None
    ranges: dict[str, StatusRanges] = {}
    valid_lists = True
    for key, valid in (("httpStatusCodes", HTTP_CODES), ("gRPCStatusCodes", GRPC_CODES)):
        if fields.get(key) is None:
            ranges[key] = ()
            continue
        try:
            ranges[key] = parse_status_ranges(fields[key], valid)
        except StatusRangeError as exc:
            check.add(f"{path}.{key}", str(exc))
            valid_lists = False
    if not valid_lists:
        return None
    return StatusMatching(http=ranges["httpStatusCodes"], grpc=ranges["gRPCStatusCodes"])


def _budget(check: Problems, path: str, value: object) -> RetryBudgetPolicy | None:
    fields = check.mapping(path, {} if value is None else value, _BUDGET_FIELDS)
    if fields is None:
        return None
    default = RetryBudgetPolicy()
    ratio = default.ratio
    floor = default.min_retries_per_second
    window: float | None = default.window
    if "ratio" in fields:
        ratio = check.number(f"{path}.ratio", fields["ratio"], 0.0, 1.0) or 0.0
    if "minRetriesPerSecond" in fields:
        value = fields["minRetriesPerSecond"]
        floor = check.number(f"{path}.minRetriesPerSecond", value, 0.0, None) or 0.0
    if "window" in fields:
        window = _duration(check, f"{path}.window", fields["window"])
        if window == 0.0:
            check.add(f"{path}.window", "must be longer than 0")
    if window is None or window == 0.0:
        return None
    return RetryBudgetPolicy(ratio=ratio, min_retries_per_second=floor, window=window)


def _breaker(check: Problems, path: str, name: str, value: object) -> BreakerPolicy | None:
    fields = check.mapping(path, value, _BREAKER_FIELDS)
    if fields is None:
        return None
    before = len(check)
    max_requests: int | None = 0
    if "maxRequests" in fields:
        max_requests = check.integer(f"{path}.maxRequests", fields["maxRequests"], 0)
    interval = _optional_duration(check, path, fields, "interval", 0.0)
    timeout = _optional_duration(check, path, fields, "timeout", DEFAULT_BREAKER_TIMEOUT)
    trip = None
    if "trip" not in fields:
        check.add(f"{path}.trip", "missing")
    elif isinstance(fields["trip"], str):
        try:
            trip = compile_trip(fields["trip"])
        except TripExpressionError as exc:
            check.add(f"{path}.trip", str(exc))
    else:
        check.add(f"{path}.trip", f"expected a string expression, got {type_name(fields['trip'])}")
    if len(check) != before:
        return None
    assert max_requests is not None and interval is not None and timeout is not None
    assert trip is not None
    # gobreaker's zero values: maxRequests 0 admits one probe, timeout 0 means 60s.
    return BreakerPolicy(
        name=name,
        max_requests=max_requests or 1,
        interval=interval,
        timeout=timeout or DEFAULT_BREAKER_TIMEOUT,
        trip=trip,
    )


def _targets(check: Problems, value: object, apps: dict[str, AppTarget]) -> None:
    targets = check.mapping("spec.targets", value, _TARGET_KINDS) or {}
    for kind, message in _UNSUPPORTED_TARGETS.items():
        if kind in targets:
            check.add(f"spec.targets.{kind}", message)
    if targets.get("apps") is None:
        return
    for app_id, item in _named(check, "spec.targets.apps", targets["apps"]).items():
        target = _app_target(check, f"spec.targets.apps.{app_id}", item)
        if target is not None:
            apps[app_id] = target


def _app_target(check: Problems, path: str, value: object) -> AppTarget | None:
    fields = check.mapping(path, value, _APP_FIELDS)
    if fields is None:
        return None
    before = len(check)
    names = {
        key: check.name(f"{path}.{key}", fields[key])
        for key in ("timeout", "retry", "circuitBreaker")
        if fields.get(key) is not None
    }
    size: int | None = DEFAULT_BREAKER_CACHE_SIZE
    if "circuitBreakerCacheSize" in fields:
        raw_size = fields["circuitBreakerCacheSize"]
        size = check.integer(f"{path}.circuitBreakerCacheSize", raw_size, 0)
    if len(check) != before:
        return None
    return AppTarget(
        timeout=names.get("timeout"),
        retry=names.get("retry"),
        circuit_breaker=names.get("circuitBreaker"),
        # Go's zero value: 0 means the default size.
        circuit_breaker_cache_size=size or DEFAULT_BREAKER_CACHE_SIZE,
    )
