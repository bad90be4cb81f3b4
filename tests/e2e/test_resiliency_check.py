"""``tether resiliency check FILE...`` as a user runs it: the real messages, not only exit codes."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import Cluster

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

BAD = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: broken}
spec:
  policies:
    retries:
      important: {policy: constant, duration: "5 s", maxRetries: 3}
      other: {policy: constant, duration: 10ms, maxRetry: 3}
    circuitBreakers:
      evil: {maxRequests: 1, timeout: 2s, trip: 'eval("x")'}
  targets:
    apps:
      orders: {retry: missing}
"""


def write(cluster: Cluster, name: str, text: str) -> Path:
    path = cluster.root / name
    path.write_text(text)
    return path


def test_good_file_prints_a_summary(cluster: Cluster) -> None:
    path = write(cluster, "good.yaml", GOOD)
    result = cluster.tether("resiliency", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: myresiliency\n")
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "timeout general: 5s per attempt" in lines
    assert "retry important: constant 0.05s, 3 retries" in lines
    assert "circuit breaker simple: trip 'consecutiveFailures > 5', open for 30s" in lines
    assert "app orders: timeout general, retry important, circuit breaker simple" in lines
    assert result.stderr == ""


def test_bad_file_reports_every_problem_with_its_field_path(cluster: Cluster) -> None:
    path = write(cluster, "bad.yaml", BAD)
    result = cluster.tether("resiliency", "check", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        f'{path}: spec.policies.retries.important.duration: "5 s" is not a duration',
        f'{path}: spec.policies.retries.other.maxRetry: unknown field (did you mean "maxRetries"?)',
        f"{path}: spec.policies.circuitBreakers.evil.trip:"
        " string literal at column 6 is not supported",
        f'{path}: spec.targets.apps.orders.retry: unknown retry policy "missing"',
        "4 problems found",
    ]
    assert "Traceback" not in result.stderr
    assert "ok:" not in result.stdout


def test_yaml_syntax_error_names_the_line(cluster: Cluster) -> None:
    text = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: x\nspec: [\n"
    path = write(cluster, "syntax.yaml", text)
    result = cluster.tether("resiliency", "check", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: line 4: expected ',' or '}}', but got ':'",
        "1 problem found",
    ]
    assert "Traceback" not in result.stderr


def test_missing_file_is_one_usage_error(cluster: Cluster) -> None:
    missing = cluster.root / "nope.yaml"
    result = cluster.tether("resiliency", "check", str(missing))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"tether: error: {missing}: no such file or folder"]
    assert result.stdout == ""


def test_problems_in_a_multi_document_file_name_the_document(cluster: Cluster) -> None:
    other = GOOD.replace("myresiliency", "second").replace("general: 5s", "general: -5s")
    path = write(cluster, "both.yaml", "kind: Component\nmetadata: {name: c}\n---\n" + other)
    result = cluster.tether("resiliency", "check", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f'note: {path}: document 1: skipped: kind "Component" is not Resiliency'
    ]
    assert result.stderr.splitlines() == [
        f"{path}: document 2: spec.policies.timeouts.general:"
        ' "-5s" is negative; durations must be 0 or more',
        "1 problem found",
    ]


def alias_bomb() -> str:
    """A Resiliency file whose nested aliases expand to 9**9 values (under 700 bytes)."""
    lines = ["apiVersion: dapr.io/v1alpha1", "kind: Resiliency", "metadata: {name: bomb}"]
    lines.append("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]")
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_with_a_message(cluster: Cluster) -> None:
    path = write(cluster, "bomb.yaml", alias_bomb())
    assert path.stat().st_size < 700
    # Before: minutes of CPU and hundreds of MB. The bound here only stops a hang.
    result = cluster.tether("resiliency", "check", str(path), timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        # l5, the first level past the bound: 9**6 values.
        f"{path}: line 9: the document expands to more than 250,000 values through its aliases",
        "1 problem found",
    ]
