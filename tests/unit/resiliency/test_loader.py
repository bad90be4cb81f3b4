from __future__ import annotations

from pathlib import Path

import pytest

from resiliency.errors import ConfigInvalid
from resiliency.loader import load_resiliency, load_texts
from resiliency.policies import BackoffKind
from yamlcheck import Location

GOOD = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: myresiliency}
scopes: [checkout]
spec:
  policies:
    timeouts: {general: 5s}
    retries:
      important: {policy: constant, duration: 50ms, maxRetries: 3,
                  matching: {httpStatusCodes: "500-599,429"}}
    circuitBreakers:
      simple: {maxRequests: 1, timeout: 30s, trip: consecutiveFailures > 5}
  targets:
    apps:
      orders: {timeout: general, retry: important, circuitBreaker: simple}
"""

HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\n"


def problems(text: str, file: str = "res.yaml") -> list[str]:
    _, report = load_texts([(file, text)])
    return list(report.lines())


def test_issue_example_loads(tmp_path: Path) -> None:
    (tmp_path / "res.yaml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("ignored")
    config, report = load_resiliency([tmp_path], app_id="checkout")
    assert report.ok and report.problems == ()
    assert config.resource_names == ("myresiliency",)
    assert config.timeouts["general"].per_attempt == 5.0
    retry = config.retries["important"]
    assert (retry.kind, retry.duration, retry.max_retries) == (BackoffKind.CONSTANT, 0.05, 3)
    assert retry.matching.http == ((500, 599), (429, 429))
    breaker = config.circuit_breakers["simple"]
    assert (breaker.max_requests, breaker.timeout, breaker.interval) == (1, 30.0, 0.0)
    assert config.apps["orders"].circuit_breaker_cache_size == 100


def test_defaults_and_zero_values() -> None:
    text = HEADER + (
        "spec:\n  policies:\n    retries: {r: {}}\n"
        "    circuitBreakers: {b: {maxRequests: 0, timeout: 0, trip: 'requests > 1'}}\n"
        "    timeouts: {t: 500}\n"
    )
    config, report = load_texts([("f", text)])
    assert report.ok
    retry = config.retries["r"]
    assert (retry.duration, retry.max_interval, retry.max_retries) == (5.0, 60.0, -1)
    assert retry.kind is BackoffKind.CONSTANT
    assert config.circuit_breakers["b"].max_requests == 1
    assert config.circuit_breakers["b"].timeout == 60.0
    assert config.timeouts["t"].per_attempt == 0.5


def test_scopes_filter_and_notes() -> None:
    config, report = load_texts([("res.yaml", GOOD)], app_id="orders")
    assert report.ok
    assert config.resource_names == ()
    assert [str(n) for n in report.notes] == [
        'res.yaml: skipped: myresiliency is scoped to [checkout], not "orders"'
    ]


def test_other_kinds_are_notes_not_problems() -> None:
    text = "kind: Component\nmetadata: {name: c}\n---\n" + GOOD
    config, report = load_texts([("all.yaml", text)])
    assert report.ok
    assert [str(n) for n in report.notes] == [
        'all.yaml: document 1: skipped: kind "Component" is not Resiliency'
    ]
    assert config.resource_names == ("myresiliency",)


def test_every_problem_at_once_with_exact_messages() -> None:
    text = (
        HEADER
        + """\
spec:
  policies:
    timeouts: {general: 5 s, other: {perAttempt: 1s, total: 2s}}
    retries:
      important: {policy: linear, duration: "5 s", maxRetry: 3, maxRetries: -2,
                  matching: {httpStatusCodes: "500-599,700", gRPCStatusCodes: "4-1"}}
    circuitBreakers:
      simple: {maxRequests: -1, trip: consecutiveFailure > 5}
      nontrip: {timeout: 30s}
  targets:
    apps:
      orders: {timeout: general, retries: important}
    actors: {}
    components: {}
"""
    )
    assert problems(text) == [
        'res.yaml: spec.policies.timeouts.general: "5 s" is not a duration',
        "res.yaml: spec.policies.timeouts.other.total: unknown field",
        "res.yaml: spec.policies.retries.important.maxRetry: unknown field"
        ' (did you mean "maxRetries"?)',
        "res.yaml: spec.policies.retries.important.policy:"
        ' must be "constant" or "exponential", not "linear"',
        'res.yaml: spec.policies.retries.important.duration: "5 s" is not a duration',
        "res.yaml: spec.policies.retries.important.maxRetries:"
        " must be -1 (unlimited) or more, not -2",
        "res.yaml: spec.policies.retries.important.matching.httpStatusCodes:"
        ' "700" is outside 100-599',
        "res.yaml: spec.policies.retries.important.matching.gRPCStatusCodes:"
        ' "4-1" starts after it ends',
        "res.yaml: spec.policies.circuitBreakers.simple.maxRequests: must be 0 or more, not -1",
        "res.yaml: spec.policies.circuitBreakers.simple.trip: unknown variable"
        ' "consecutiveFailure" at column 1 (did you mean "consecutiveFailures"?)',
        "res.yaml: spec.policies.circuitBreakers.nontrip.trip: missing",
        "res.yaml: spec.targets.actors: actor targets are not supported by tether"
        " (it has no actors)",
        "res.yaml: spec.targets.components: component targets are not supported by tether"
        " (it has no components)",
        'res.yaml: spec.targets.apps.orders.retries: unknown field (did you mean "retry"?)',
    ]


def test_top_level_problems() -> None:
    text = "apiVersion: v2\nkind: Resiliency\nmetadata: {labels: []}\nscopes: app\nextra: 1\n"
    assert problems(text) == [
        "res.yaml: extra: unknown field",
        'res.yaml: apiVersion: expected "dapr.io/v1alpha1", got "v2"',
        "res.yaml: metadata.name: missing",
        "res.yaml: scopes: expected a list of app IDs, got a string",
        "res.yaml: spec: missing",
    ]


def test_yaml_syntax_error_has_line() -> None:
    assert problems(HEADER + "spec: {a: [}\n") == [
        "res.yaml: line 4: expected the node content, but found '}'"
    ]


def test_unknown_references_and_suggestion() -> None:
    text = HEADER + (
        "spec:\n  policies:\n    retries: {important: {maxRetries: 1}}\n"
        "  targets:\n    apps:\n      orders: {retry: importnt, timeout: t}\n"
    )
    assert problems(text) == [
        'res.yaml: spec.targets.apps.orders.timeout: unknown timeout policy "t"',
        'res.yaml: spec.targets.apps.orders.retry: unknown retry policy "importnt"'
        ' (did you mean "important"?)',
    ]


def test_duplicates_across_files_name_both_and_keep_the_first() -> None:
    first = HEADER + "spec:\n  policies:\n    retries: {r: {maxRetries: 1}}\n"
    second = HEADER.replace("name: r", "name: s") + (
        "spec:\n  policies:\n    retries: {r: {maxRetries: 2}}\n"
    )
    config, report = load_texts([("a.yaml", first), ("b.yaml", second)])
    assert report.lines() == ("b.yaml: spec.policies.retries.r: already defined in a.yaml",)
    assert report.rejected == (Location("b.yaml"),)
    assert config.retries["r"].max_retries == 1


def test_references_across_files_and_broken_file_kept_apart() -> None:
    policies = HEADER + "spec:\n  policies:\n    retries: {r: {maxRetries: 1}}\n"
    targets = HEADER.replace("name: r", "name: t") + (
        "spec:\n  targets:\n    apps: {orders: {retry: r}}\n"
    )
    broken = HEADER.replace("name: r", "name: x") + "spec: {policies: {retries: {q: 1}}}\n"
    config, report = load_texts([("p.yaml", policies), ("t.yaml", targets), ("x.yaml", broken)])
    assert config.apps["orders"].retry == "r"
    assert config.resource_names == ("r", "t")
    assert report.lines() == (
        "x.yaml: spec.policies.retries.q: expected a mapping, got an integer",
    )
    with pytest.raises(ConfigInvalid) as info:
        report.raise_for_problems()
    assert info.value.problems == report.lines()


def test_missing_path(tmp_path: Path) -> None:
    _, report = load_resiliency([tmp_path / "nope"])
    assert report.lines() == (f"{tmp_path / 'nope'}: no such file or folder",)


def test_extensions_parse() -> None:
    text = (
        HEADER
        + """\
spec:
  policies:
    timeouts: {bounded: {perAttempt: 1s, overall: 5s}}
    retries:
      careful: {policy: exponential, jitter: true, respectRetryAfter: true,
                maxRetryAfter: 10s, budget: {ratio: 0.5, window: 20s}, attemptHeader: true}
"""
    )
    config, report = load_texts([("f", text)])
    assert report.ok
    timeout = config.timeouts["bounded"]
    assert (timeout.per_attempt, timeout.overall) == (1.0, 5.0)
    retry = config.retries["careful"]
    assert retry.jitter and retry.respect_retry_after and retry.attempt_header
    assert retry.max_retry_after == 10.0
    assert retry.budget is not None
    assert (retry.budget.ratio, retry.budget.min_retries_per_second, retry.budget.window) == (
        0.5,
        3.0,
        20.0,
    )


def test_extension_problems() -> None:
    text = (
        HEADER
        + """\
spec:
  policies:
    timeouts: {a: {}, b: {overal: 1s}}
    retries:
      r: {jitter: yes please, budget: {ratio: 2, window: 0s}}
"""
    )
    assert problems(text) == [
        'res.yaml: spec.policies.timeouts.a: needs "perAttempt", "overall" or both',
        'res.yaml: spec.policies.timeouts.b.overal: unknown field (did you mean "overall"?)',
        'res.yaml: spec.policies.timeouts.b: needs "perAttempt", "overall" or both',
        "res.yaml: spec.policies.retries.r.jitter: expected true or false, got a string",
        "res.yaml: spec.policies.retries.r.budget.ratio: must be between 0 and 1, not 2",
        "res.yaml: spec.policies.retries.r.budget.window: must be longer than 0",
    ]


def test_dangling_references_are_reported_even_when_the_document_has_other_problems() -> None:
    text = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: bad}
spec:
  policies:
    timeouts: {general: "5 s"}
    retries:
      important: {policy: constant, duration: 50ms}
  targets:
    apps:
      orders: {timeout: general, retry: importnt}
"""
    _, report = load_texts([("bad.yaml", text)])
    assert report.lines() == (
        'bad.yaml: spec.policies.timeouts.general: "5 s" is not a duration',
        'bad.yaml: spec.targets.apps.orders.retry: unknown retry policy "importnt"'
        ' (did you mean "important"?)',
    )


def test_problems_and_rejections_are_data_not_display_text() -> None:
    broken = HEADER.replace("name: r", "name: b") + "spec: {policies: {retries: {q: 1}}}\n"
    text = HEADER + "spec: {}\n---\n" + broken
    _, report = load_texts([("dir: document 9/a.yaml", text), ("c.yaml", "a: [")])
    assert report.rejected == (
        Location("dir: document 9/a.yaml", 2),
        Location("c.yaml"),
    )
    assert [(p.location, p.field, p.what) for p in report.problems] == [
        (Location("dir: document 9/a.yaml", 2), "spec.policies.retries.q",
         "expected a mapping, got an integer"),
        (Location("c.yaml"), "", "line 1: expected the node content, but found '<stream end>'"),
    ]  # fmt: skip
    assert report.lines() == (
        "dir: document 9/a.yaml: document 2: spec.policies.retries.q:"
        " expected a mapping, got an integer",
        "c.yaml: line 1: expected the node content, but found '<stream end>'",
    )


def test_unreadable_file_is_rejected_by_location(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe")
    _, report = load_resiliency([tmp_path])
    assert report.rejected == (Location(str(tmp_path / "bad.yaml")),)
    assert report.lines() == (f"{tmp_path / 'bad.yaml'}: not valid UTF-8",)
