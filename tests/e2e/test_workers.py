"""``--workers 2``: real supervisors and workers started as the README runs them, on
loopback, each stopped by the test that starts it (also when it fails)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import App, Cluster, Sidecar, free_port, request, wait_until

WORKERS = ("--workers", "2")
INVOKE = "/v1.0/invoke/orders/method/neworder"
_READY = re.compile(r"worker (\d+) ready: pid (\d+), its own metrics on 127\.0\.0\.1:(\d+)")


def workers(sidecar: Sidecar) -> dict[int, tuple[int, int]]:
    """Worker index -> (pid, private metrics port), the latest start of each."""
    found: dict[int, tuple[int, int]] = {}
    for index, pid, port in _READY.findall(sidecar.log()):
        found[int(index)] = (int(pid), int(port))
    return found


def metrics_port(sidecar: Sidecar) -> int:
    args = sidecar.process.args
    assert isinstance(args, list)
    return int(args[args.index("--metrics-port") + 1])


def invoke_count(text: str) -> float:
    """dapr_http_server_request_count of the invoke calls in one exposition."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "dapr_http_server_request_count":
            continue
        for sample in family.samples:
            if sample.labels.get("path") == INVOKE and sample.labels.get("status") == "200":
                total += sample.value
    return total


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def call_many(port: int, count: int) -> None:
    # A new connection per call: the kernel spreads connections, not requests.
    for _ in range(count):
        response = request(port, "POST", INVOKE, body=b'{"n":1}')
        assert response.status == 200, response.body


def pair(cluster: Cluster) -> tuple[Sidecar, Sidecar, App]:
    """orders (with its app) and checkout, each with two workers."""
    cluster.certs_init()
    app = cluster.app("orders")
    orders = cluster.sidecar("orders", app, extra=WORKERS)
    checkout = cluster.sidecar("checkout", extra=WORKERS)
    for sidecar in (orders, checkout):
        wait_until(lambda s=sidecar: len(workers(s)) == 2, "both workers ready")  # type: ignore[misc]
    return orders, checkout, app


def test_calls_reach_the_app_through_both_workers_and_metrics_add_up(cluster: Cluster) -> None:
    _, checkout, app = pair(cluster)
    calls = 60
    call_many(checkout.http_port, calls)
    assert len(app.received()) == calls
    # Both of checkout's workers served some, counted by each one's own metrics.
    per_worker = [invoke_count(scrape(port)) for _, port in workers(checkout).values()]
    assert sum(per_worker) == calls
    assert all(count > 0 for count in per_worker), per_worker
    # One scrape of the metrics port: the sum, under Dapr's names.
    merged = scrape(metrics_port(checkout))
    assert invoke_count(merged) == calls
    assert "# TYPE dapr_http_server_request_count counter" in merged
    cpu = [
        s.labels["worker"]
        for f in text_string_to_metric_families(merged)
        for s in f.samples
        if s.name == "process_cpu_seconds_total"
    ]
    assert sorted(cpu) == ["0", "1", "supervisor"]
    # The two workers of orders are one instance in the registry.
    registry = sqlite3.connect(cluster.home / ".tether" / "registry.db")
    try:
        rows = registry.execute("SELECT address FROM hosts WHERE app_id = 'orders'").fetchall()
    finally:
        registry.close()
    assert len(rows) == 1


def test_a_killed_worker_is_started_again(cluster: Cluster) -> None:
    orders, checkout, _ = pair(cluster)
    for sidecar in (checkout, orders):
        pid, _ = workers(sidecar)[1]
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda s=sidecar, old=pid: workers(s)[1][0] != old,  # type: ignore[misc]
            "worker 1 started again",
        )
        assert "worker 1 was killed by SIGKILL; starting it again" in sidecar.log()
        assert sidecar.process.poll() is None
    call_many(checkout.http_port, 20)


def test_sigterm_drains_every_worker_and_exits_0(cluster: Cluster) -> None:
    sidecar = cluster.sidecar("lonely", mtls=False, extra=WORKERS)
    wait_until(lambda: len(workers(sidecar)) == 2, "both workers ready")
    pids = [pid for pid, _ in workers(sidecar).values()]
    sidecar.process.send_signal(signal.SIGTERM)
    # --dapr-graceful-shutdown-seconds is 5; nothing is in flight.
    assert sidecar.process.wait(10) == 0
    assert not any(alive(pid) for pid in pids)


def test_shutdown_api_on_one_worker_stops_them_all(cluster: Cluster) -> None:
    sidecar = cluster.sidecar("lonely", mtls=False, extra=WORKERS)
    wait_until(lambda: len(workers(sidecar)) == 2, "both workers ready")
    pids = [pid for pid, _ in workers(sidecar).values()]
    assert request(sidecar.http_port, "POST", "/v1.0/shutdown").status == 204
    assert sidecar.process.wait(10) == 0
    assert not any(alive(pid) for pid in pids)
    assert "was asked to shut down (POST /v1.0/shutdown)" in sidecar.log()


def test_a_taken_port_is_refused_at_once(cluster: Cluster) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = cluster.tether(
            "sidecar", "--app-id", "a", "--dapr-http-port", str(port), "--enable-metrics=false",
            *WORKERS,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"tether: error: cannot listen on HTTP port {port}: " in result.stderr
    # A second tether with workers on the port of a running one is refused as well.
    first = cluster.sidecar("first", mtls=False, extra=WORKERS)
    second = cluster.tether(
        "sidecar", "--app-id", "b", "--dapr-http-port", str(first.http_port),
        "--enable-metrics=false", *WORKERS,
    )  # fmt: skip
    assert second.returncode == 1
    assert f"cannot listen on HTTP port {first.http_port}: " in second.stderr


def test_zero_workers_are_refused(cluster: Cluster) -> None:
    result = cluster.tether("sidecar", "--app-id", "a", "--workers", "0")
    assert result.returncode == 2
    assert "tether: error: --workers: '0' is not a number of worker processes" in result.stderr


def test_run_passes_workers_to_its_sidecar(cluster: Cluster) -> None:
    port = free_port()
    app = (
        "import os, urllib.request;"
        "r = urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"DAPR_HTTP_PORT\"]}/v1.0/healthz');"
        "raise SystemExit(0 if r.status == 204 else 1)"
    )
    result = cluster.tether(
        "run", "--app-id", "runner", "--dapr-http-port", str(port), "--enable-mtls=false",
        "--metrics-port", str(free_port()), "--metrics-listen-address", "127.0.0.1", *WORKERS,
        "--", sys.executable, "-c", app,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ready: 2 workers" in result.stderr
