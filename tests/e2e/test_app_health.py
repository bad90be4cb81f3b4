"""App health checks: an unhealthy app is reported by /v1.0/healthz and calls
to it fail fast, without reaching it, until it recovers."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.harness import APPS, App, Cluster, request, wait_for_port, wait_until

HEALTH = ("--enable-app-health-check", "--app-health-probe-interval", "1",
          "--app-health-threshold", "1")  # fmt: skip


def _wait_status(port: int, path: str, status: int) -> None:
    wait_until(
        lambda: request(port, "GET", path, timeout=5).status == status,
        f"{path} answers {status}",
    )


def test_unhealthy_app_is_reported_and_short_circuited(cluster: Cluster) -> None:
    app = cluster.app("orders")
    # The app answers its health path with 503: reachable, but unhealthy.
    orders = cluster.sidecar(
        "orders", app, mtls=False, extra=(*HEALTH, "--app-health-check-path", "/status/503"),
        wait=False,
    )  # fmt: skip
    checkout = cluster.sidecar("checkout", mtls=False)
    _wait_status(orders.http_port, "/v1.0/healthz/outbound", 204)
    health = request(orders.http_port, "GET", "/v1.0/healthz")
    assert health.status == 500
    assert health.json() == {
        "errorCode": "ERR_HEALTH_NOT_READY",
        "message": "dapr is not ready: [app health]",
    }
    for via in (checkout, orders):  # remote caller, and a call to its own app
        response = request(via.http_port, "POST", "/v1.0/invoke/orders/method/work", body=b"{}")
        assert response.status == 500
        assert "app is not in a healthy state" in response.json()["message"]  # type: ignore[index]
    assert all(entry["path"] == "/status/503" for entry in app.received())
    metadata = request(orders.http_port, "GET", "/v1.0/metadata").json()
    assert metadata["appConnectionProperties"]["health"] == {  # type: ignore[index]
        "healthCheckPath": "/status/503",
        "healthProbeInterval": "1s",
        "healthProbeTimeout": "500ms",
        "healthThreshold": 1,
    }


def test_app_recovers_after_restart(cluster: Cluster) -> None:
    app = cluster.app("orders")
    orders = cluster.sidecar(
        "orders", app, mtls=False, extra=(*HEALTH, "--app-health-check-path", "/status/200"),
        wait=False,
    )  # fmt: skip
    checkout = cluster.sidecar("checkout", mtls=False)
    _wait_status(orders.http_port, "/v1.0/healthz", 204)
    assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/before").status == 200

    cluster.stop(app.process)
    _wait_status(orders.http_port, "/v1.0/healthz", 500)
    down = request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/down")
    assert down.status == 500
    assert "app is not in a healthy state" in down.json()["message"]  # type: ignore[index]

    process = subprocess.Popen(
        [sys.executable, str(APPS / "echo_app.py"), str(app.port), str(app.log_path)]
    )
    cluster.processes.append(process)
    wait_for_port(app.port, process)
    restarted = App(app.port, app.log_path, process)
    _wait_status(orders.http_port, "/v1.0/healthz", 204)
    assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/after").status == 200
    paths = [entry["path"] for entry in restarted.received()]
    assert "/after" in paths and "/down" not in paths
