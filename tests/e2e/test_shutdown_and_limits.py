"""Graceful shutdown (SIGTERM and POST /v1.0/shutdown) lets calls in flight
finish; --app-max-concurrency bounds how many calls the app sees at once."""

from __future__ import annotations

import resource
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.harness import App, Cluster, Response, Sidecar, request, wait_until

GRACE = ("--dapr-graceful-shutdown-seconds", "5")
SLOW_MS = 1500
SLOW_BODY = b'{"slow":true}'
LIMIT_ONE = ("--app-max-concurrency", "1")


def _wait_arrival(app: App, path: str) -> None:
    """Until the app has logged a request for ``path`` (it logs before answering)."""
    wait_until(
        lambda: any(entry["path"] == path for entry in app.received()),
        f"{path} reaches the app",
    )


def _slow_call_interrupted(via: Sidecar, app: App, stop: Callable[[], None]) -> Response:
    """Call the app's slow route through ``via``; once the app has it, run ``stop``."""
    path = f"/slow/{SLOW_MS}"
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(request, via.http_port, "GET", f"/v1.0/invoke/orders/method{path}")
        _wait_arrival(app, path)
        assert not call.done(), "the slow call finished before the shutdown was asked for"
        stop()
        return call.result(timeout=60)


def _sigterm(sidecar: Sidecar) -> Callable[[], None]:
    return lambda: sidecar.process.send_signal(signal.SIGTERM)


def _shutdown_endpoint(sidecar: Sidecar) -> Callable[[], None]:
    def ask() -> None:
        assert request(sidecar.http_port, "POST", "/v1.0/shutdown").status == 204

    return ask


def _assert_gone_from_registry(checkout: Sidecar) -> None:
    """Calls to orders fail; once any cached endpoint is dropped the registry says 'not found'."""

    def not_found() -> bool:
        response = request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/after")
        assert response.status == 500, response.body
        body = response.json()
        assert body["errorCode"] == "ERR_DIRECT_INVOKE"  # type: ignore[index]
        return "app id orders not found" in body["message"]  # type: ignore[index]

    wait_until(not_found, "the registry no longer knows orders")


def _start(cluster: Cluster, *orders_flags: str) -> tuple[App, Sidecar, Sidecar]:
    cluster.certs_init()
    app = cluster.app("orders")
    orders = cluster.sidecar("orders", app, extra=(*GRACE, *orders_flags))
    checkout = cluster.sidecar("checkout", extra=GRACE)
    return app, orders, checkout


def test_sigterm_to_callee_sidecar_finishes_the_call_in_flight(cluster: Cluster) -> None:
    app, orders, checkout = _start(cluster)
    response = _slow_call_interrupted(checkout, app, _sigterm(orders))
    assert response.status == 200, response.body
    assert response.body == SLOW_BODY
    assert orders.process.wait(30) == 0, orders.log()
    # It left the registry on the way out: no new call reaches the app.
    _assert_gone_from_registry(checkout)
    assert [entry["path"] for entry in app.received()] == [f"/slow/{SLOW_MS}"]
    assert checkout.process.poll() is None


def test_sigterm_to_caller_sidecar_finishes_the_call_in_flight(cluster: Cluster) -> None:
    app, orders, checkout = _start(cluster)
    response = _slow_call_interrupted(checkout, app, _sigterm(checkout))
    assert response.status == 200, response.body
    assert response.body == SLOW_BODY
    assert checkout.process.wait(30) == 0, checkout.log()
    with pytest.raises(OSError):
        request(checkout.http_port, "GET", "/v1.0/healthz", timeout=5)
    # The callee side is untouched by the caller going away.
    assert request(orders.http_port, "GET", "/v1.0/healthz").status == 204
    assert request(orders.http_port, "GET", "/v1.0/invoke/orders/method/still").status == 200


@pytest.mark.parametrize("target", ["orders", "checkout"])
def test_shutdown_endpoint_finishes_the_call_in_flight(cluster: Cluster, target: str) -> None:
    app, orders, checkout = _start(cluster)
    stopping = orders if target == "orders" else checkout
    response = _slow_call_interrupted(checkout, app, _shutdown_endpoint(stopping))
    assert response.status == 200, response.body
    assert response.body == SLOW_BODY
    assert stopping.process.wait(30) == 0, stopping.log()
    if target == "orders":
        _assert_gone_from_registry(checkout)


def _concurrent_calls(checkout: Sidecar, calls: int = 4, sleep_ms: int = 400) -> list[Response]:
    """``calls`` requests released together through checkout to the app's counting route."""
    start = threading.Barrier(calls)

    def one(index: int) -> Response:
        start.wait(timeout=30)
        path = f"/v1.0/invoke/orders/method/concurrent/{sleep_ms}?call={index}"
        return request(checkout.http_port, "GET", path, timeout=60)

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


def _peak(responses: list[Response]) -> int:
    for response in responses:
        assert response.status == 200, response.body
    return max(int(response.json()["in_flight"]) for response in responses)  # type: ignore[index]


def _concurrent_arrivals(app: App) -> int:
    return sum(1 for entry in app.received() if str(entry["path"]).startswith("/concurrent/"))


def test_app_max_concurrency_one_serialises_calls_to_the_app(cluster: Cluster) -> None:
    app, _, checkout = _start(cluster, *LIMIT_ONE)
    for round_ in range(1, 3):
        responses = _concurrent_calls(checkout)
        assert _peak(responses) == 1
        assert _concurrent_arrivals(app) == 4 * round_


def test_without_a_limit_calls_reach_the_app_together(cluster: Cluster) -> None:
    """The control for the test above: the same experiment does overlap at the app."""
    app, _, checkout = _start(cluster)
    peaks: list[int] = []
    for _ in range(5):
        peaks.append(_peak(_concurrent_calls(checkout)))
        if peaks[-1] > 1:
            break
    assert max(peaks) > 1, f"never more than one call in flight at the app: {peaks}"
    assert _concurrent_arrivals(app) == 4 * len(peaks)


def test_metadata_reports_max_concurrency_only_when_set(cluster: Cluster) -> None:
    _, orders, checkout = _start(cluster, *LIMIT_ONE)
    limited = request(orders.http_port, "GET", "/v1.0/metadata")
    assert limited.status == 200
    properties = limited.json()["appConnectionProperties"]  # type: ignore[index]
    assert properties["maxConcurrency"] == 1
    unlimited = request(checkout.http_port, "GET", "/v1.0/metadata").json()
    assert "maxConcurrency" not in unlimited["appConnectionProperties"]  # type: ignore[index]


def open_file_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-file limit in /proc")


def test_the_open_file_limit_is_raised_to_the_hard_limit(cluster: Cluster) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open-file limit here is only {hard}")
    # The sidecar inherits a low soft limit, as from a distro's default of 1,024.
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        sidecar = cluster.sidecar("orders", mtls=False)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    raised, kept = open_file_limits(sidecar.process.pid)
    if expected == "unlimited":
        assert raised == str(1 << 20) and kept == "unlimited"
    else:
        assert (raised, kept) == (expected, expected)
