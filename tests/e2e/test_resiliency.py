"""Resiliency policies end to end: a checkout sidecar carries a Resiliency file in
its --resources-path and calls orders (a real app that fails on command) through
the orders sidecar over mTLS; every assertion counts what really reached the app."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.harness import App, Cluster, Response, Sidecar, free_port, request

FIVE_RETRIES = (
    "{retries: {five: {policy: constant, duration: 10ms, maxRetries: 5,"
    ' matching: {httpStatusCodes: "500-599"}}}}'
)
RETRY_FIVE = "{orders: {retry: five}}"
BREAKER_OPEN = "circuit breaker is open"
CHUNK = 64 * 1024


def as_logged(message: str) -> str:
    """The sidecar's log quotes its message, so inner quotes appear escaped."""
    return message.replace('"', '\\"')


def document(policies: str, apps: str | None = None, name: str = "e2e") -> str:
    """A Resiliency document scoped to checkout, in YAML flow style."""
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Resiliency",
        f"metadata: {{name: {name}}}",
        "scopes: [checkout]",
        "spec:",
        f"  policies: {policies}",
    ]
    if apps is not None:
        lines.append(f"  targets: {{apps: {apps}}}")
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str) -> None:
    """Replace the file in one step, with an mtime the reloader cannot mistake for the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    stamp = time.time_ns()
    if path.exists():
        stamp = max(stamp, path.stat().st_mtime_ns + 2_000_000_000)
    os.utime(temporary, ns=(stamp, stamp))
    os.replace(temporary, path)


def start(cluster: Cluster, text: str) -> tuple[App, Sidecar, Path]:
    """orders app + orders sidecar, and a checkout sidecar loading ``text`` as its policies."""
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    policy_file = resources / "resiliency.yaml"
    write_file(policy_file, text)
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout", extra=("--resources-path", str(resources)))
    return app, checkout, policy_file


def invoke(checkout: Sidecar, method: str) -> Response:
    return request(checkout.http_port, "GET", f"/v1.0/invoke/orders/method/{method}")


def calls(app: App, method: str) -> int:
    return sum(1 for entry in app.received() if entry["path"] == f"/{method}")


def error_message(response: Response) -> str:
    body = response.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE", body  # type: ignore[index]
    return str(body["message"])  # type: ignore[index]


def test_retries_count_calls_as_dapr_does(cluster: Cluster) -> None:
    app, checkout, _ = start(cluster, document(FIVE_RETRIES, RETRY_FIVE))

    # Fails 3 times, then succeeds: 1 call + 3 retries.
    response = invoke(checkout, "fail/3/500/k1")
    assert response.status == 200, response.body
    assert response.json() == {"ok": 4}
    assert calls(app, "fail/3/500/k1") == 4

    # Always fails: 1 call + 5 retries, and the caller gets the app's last answer.
    response = invoke(checkout, "fail/100/500/k")
    assert response.status == 500
    assert response.json() == {"failed": 6}
    assert calls(app, "fail/100/500/k") == 6

    # 404 is outside matching.httpStatusCodes: not retried.
    response = invoke(checkout, "fail/100/404/k2")
    assert response.status == 404
    assert response.json() == {"failed": 1}
    assert calls(app, "fail/100/404/k2") == 1


def test_timeout_fails_the_call_with_dapr_error(cluster: Cluster) -> None:
    app, checkout, _ = start(
        cluster, document("{timeouts: {short: 300ms}}", "{orders: {timeout: short}}")
    )
    response = invoke(checkout, "slow/3000")
    assert response.status == 500
    assert "context deadline exceeded" in error_message(response)
    deadline = time.monotonic() + 5
    while calls(app, "slow/3000") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(app, "slow/3000") == 1


def test_circuit_breaker_opens_half_opens_and_closes(cluster: Cluster) -> None:
    breaker = (
        '{circuitBreakers: {cb: {maxRequests: 1, timeout: 2s, trip: "consecutiveFailures > 2"}}}'
    )
    app, checkout, _ = start(cluster, document(breaker, "{orders: {circuitBreaker: cb}}"))
    method = "fail/3/500/b"
    for number in (1, 2, 3):
        response = invoke(checkout, method)
        assert response.status == 500
        assert response.json() == {"failed": number}
        assert calls(app, method) == number

    # Three consecutive failures: open. The call fails at once; the app sees nothing.
    response = invoke(checkout, method)
    assert response.status == 500
    assert BREAKER_OPEN in error_message(response)
    assert calls(app, method) == 3

    # Breakers are per app and method: another method still reaches the app.
    assert invoke(checkout, "ok").status == 200
    assert calls(app, "ok") == 1

    # After the open timeout (2s) a half-open probe gets through and succeeds.
    deadline = time.monotonic() + 15
    while True:
        response = invoke(checkout, method)
        if response.status != 500 or BREAKER_OPEN not in response.body.decode():
            break
        assert calls(app, method) == 3
        assert time.monotonic() < deadline, "the breaker never let a probe through"
        time.sleep(0.2)
    assert response.status == 200, response.body
    assert response.json() == {"ok": 4}
    assert calls(app, method) == 4

    # The successful probe closed it.
    response = invoke(checkout, method)
    assert response.status == 200
    assert response.json() == {"ok": 5}
    assert calls(app, method) == 5


def test_default_app_retry_policy_applies_without_targets(cluster: Cluster) -> None:
    policies = (
        "{retries: {DefaultAppRetryPolicy: {policy: constant, duration: 10ms, maxRetries: 2}}}"
    )
    app, checkout, _ = start(cluster, document(policies))
    response = invoke(checkout, "fail/100/500/d")
    assert response.status == 500
    assert response.json() == {"failed": 3}
    assert calls(app, "fail/100/500/d") == 3


def chunked_upload(port: int, method: str, total: int) -> tuple[int, bytes]:
    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent < total:
            size = min(CHUNK, total - sent)
            yield b"z" * size
            sent += size

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST", f"/v1.0/invoke/orders/method/{method}", body=chunks(), encode_chunked=True
        )
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_streamed_request_body_is_never_retried(cluster: Cluster) -> None:
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    write_file(resources / "resiliency.yaml", document(FIVE_RETRIES, RETRY_FIVE))
    app = cluster.app("orders")
    limit = ("--max-body-size", "16Mi")
    cluster.sidecar("orders", app, extra=limit)
    checkout = cluster.sidecar("checkout", extra=(*limit, "--resources-path", str(resources)))

    # Larger than the 4 MiB replay buffer: streamed through, so sent exactly once.
    big = 5 * 1024 * 1024
    status, body = chunked_upload(checkout.http_port, "fail/100/500/stream", big)
    assert status == 500
    assert json.loads(body) == {"failed": 1}
    assert calls(app, "fail/100/500/stream") == 1
    assert app.received()[-1]["body_length"] == big

    # A chunked body that fits the replay buffer is buffered and retried as usual.
    small = 1024 * 1024
    status, body = chunked_upload(checkout.http_port, "fail/100/500/buffered", small)
    assert status == 500
    assert json.loads(body) == {"failed": 6}
    assert calls(app, "fail/100/500/buffered") == 6
    lengths = [e["body_length"] for e in app.received() if e["path"] == "/fail/100/500/buffered"]
    assert lengths == [small] * 6


def retry_document(max_retries: int | str, duration: str = "10ms") -> str:
    policies = (
        f"{{retries: {{r: {{policy: constant, duration: {duration}, maxRetries: {max_retries}}}}}}}"
    )
    return document(policies, "{orders: {retry: r}}")


def test_hot_reload_applies_new_policies_and_keeps_the_last_good(cluster: Cluster) -> None:
    app, checkout, policy_file = start(cluster, retry_document(1))
    response = invoke(checkout, "fail/100/500/h0")
    assert response.json() == {"failed": 2}
    assert calls(app, "fail/100/500/h0") == 2

    write_file(policy_file, retry_document(3))
    deadline = time.monotonic() + 20
    attempt = 0
    while True:
        attempt += 1
        method = f"fail/100/500/h{attempt}"
        seen = calls_of(checkout, app, method)
        if seen == 4:
            break
        assert seen == 2, f"{method} was called {seen} times"
        assert time.monotonic() < deadline, "maxRetries: 3 was never applied"
        time.sleep(0.2)

    write_file(policy_file, retry_document(3, duration='"5 s"'))
    problem = f'{policy_file}: spec.policies.retries.r.duration: "5 s" is not a duration'
    deadline = time.monotonic() + 20
    while as_logged(problem) not in checkout.log():
        assert time.monotonic() < deadline, f"no reload problem logged:\n{checkout.log()}"
        time.sleep(0.2)
    # The reload that logged the problem has decided: the last good policies stay.
    assert calls_of(checkout, app, "fail/100/500/after-bad-edit") == 4
    log = checkout.log()
    assert str(policy_file) in log
    assert "spec.policies.retries." in log


def test_an_alias_bomb_dropped_in_is_refused_and_calls_go_on(cluster: Cluster) -> None:
    from tests.e2e.test_resiliency_check import alias_bomb

    app, checkout, policy_file = start(cluster, retry_document(1))
    # Before: the reload expanded it on the event loop, froze the sidecar for minutes
    # and ignored SIGTERM. Now it is refused before any walk, off the loop.
    write_file(policy_file.with_name("bomb.yaml"), alias_bomb())
    problem = "the document expands to more than 250,000 values through its aliases"
    deadline = time.monotonic() + 20
    while problem not in checkout.log():
        assert time.monotonic() < deadline, f"the bomb was not refused:\n{checkout.log()}"
        time.sleep(0.2)
    # The policies loaded before still apply: one retry, two calls at the app.
    assert calls_of(checkout, app, "fail/100/500/after-bomb") == 2


def calls_of(checkout: Sidecar, app: App, method: str) -> int:
    """Invoke an always-failing method once; how many times the app was called for it."""
    response = invoke(checkout, method)
    assert response.status == 500
    seen = calls(app, method)
    assert response.json() == {"failed": seen}
    return seen


def test_attempt_header_extension_numbers_each_attempt(cluster: Cluster) -> None:
    policies = (
        "{retries: {counted: {policy: constant, duration: 10ms, maxRetries: 2,"
        " attemptHeader: true}}}"
    )
    app, checkout, _ = start(cluster, document(policies, "{orders: {retry: counted}}"))
    response = invoke(checkout, "fail/100/500/a")
    assert response.status == 500
    attempts = [
        [value for name, value in entry["headers"] if name == "tether-attempt"]  # type: ignore[attr-defined]
        for entry in app.received()
        if entry["path"] == "/fail/100/500/a"
    ]
    assert attempts == [["1"], ["2"], ["3"]]


BROKEN = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: broken}
scopes: [checkout]
spec:
  policies:
    retries:
      slow: {policy: constant, duration: "5 s", maxRetries: 3}
  targets:
    apps:
      orders: {retry: slow}
"""


def test_strict_config_refuses_a_broken_file_and_default_skips_it(cluster: Cluster) -> None:
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    broken = resources / "broken.yaml"
    write_file(broken, BROKEN)
    write_file(resources / "good.yaml", retry_document(1))
    problem = f'{broken}: spec.policies.retries.slow.duration: "5 s" is not a duration'

    result = cluster.tether(
        "sidecar",
        "--app-id",
        "checkout",
        "--dapr-http-port",
        str(free_port()),
        "--resources-path",
        str(resources),
        "--strict-config",
        timeout=30,
    )
    assert result.returncode != 0
    assert f"tether: error: {problem}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr

    # Without --strict-config: the sidecar starts, says why it skipped the file,
    # and serves with the valid one (maxRetries: 1 -> 2 calls).
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout", extra=("--resources-path", str(resources)))
    assert request(checkout.http_port, "GET", "/v1.0/healthz").status == 204
    assert as_logged(problem) in checkout.log()
    assert "Traceback" not in checkout.log()
    assert calls_of(checkout, app, "fail/100/500/s") == 2
