"""A real Prometheus server scrapes two sidecars: Dapr's metric names and
labels arrive, counts match the calls made, including a retried call and a
breaker that tripped."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.e2e.harness import Cluster, free_port, request, wait_for_port

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="needs Debian's prometheus package (.ci/run installs it)"
)

RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: metricsdemo}
scopes: [checkout]
spec:
  policies:
    retries:
      twice: {policy: constant, duration: 10ms, maxRetries: 2}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 60s, trip: consecutiveFailures > 2}
  targets:
    apps:
      orders: {retry: twice, circuitBreaker: cb}
"""


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        document = json.loads(response.read())
    assert document["status"] == "success", document
    return list(document["data"]["result"])


def value(results: list[dict[str, object]]) -> float:
    return sum(float(r["value"][1]) for r in results)  # type: ignore[index]


def wait_for(
    port: int, promql: str, expected: float, attempts: int = 150
) -> list[dict[str, object]]:
    """Poll Prometheus (bounded) until the query sums to ``expected``."""
    results: list[dict[str, object]] = []
    for _ in range(attempts):
        results = query(port, promql)
        if results and value(results) == expected:
            return results
        time.sleep(0.2)
    raise AssertionError(f"{promql}: wanted {expected}, last saw {results}")


def start_prometheus(cluster: Cluster, targets: list[int]) -> int:
    port = free_port()
    config = cluster.root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: tether\n"
        "    static_configs:\n"
        f"      - targets: [{', '.join(f'127.0.0.1:{p}' for p in targets)}]\n"
    )
    data = cluster.root / "prometheus-data"
    assert PROMETHEUS is not None
    log = open(cluster.root / "prometheus.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    cluster.processes.append(process)
    wait_for_port(port, process, timeout=30)
    return port


def test_prometheus_scrapes_dapr_metrics(cluster: Cluster) -> None:
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    app = cluster.app("orders")
    orders_metrics, checkout_metrics = free_port(), free_port()
    cluster.sidecar("orders", app, extra=("--metrics-port", str(orders_metrics)))
    checkout = cluster.sidecar(
        "checkout",
        extra=("--metrics-port", str(checkout_metrics), "--resources-path", str(resources)),
    )
    prometheus = start_prometheus(cluster, [orders_metrics, checkout_metrics])

    for _ in range(5):
        assert request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/neworder",
                       body=b"{}").status == 200  # fmt: skip
    # One call that fails twice, then succeeds on its third attempt (a retried call).
    assert (
        request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/fail/2/500/r").status == 200
    )
    # An always-failing method trips the breaker (3 consecutive failures), then is refused.
    assert (
        request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/fail/99/500/b").status == 500
    )
    refused = request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/fail/99/500/b")
    assert "circuit breaker is open" in refused.json()["message"]  # type: ignore[index]

    sent = 'dapr_runtime_service_invocation_req_sent_total{app_id="checkout",dst_app_id="orders"}'
    # 5 + 3 attempts of the retried call + 3 attempts before the breaker opened.
    wait_for(prometheus, sent, 11)
    recv = 'dapr_runtime_service_invocation_req_recv_total{app_id="orders",src_app_id="checkout"}'
    wait_for(prometheus, recv, 11)
    ok = ('dapr_runtime_service_invocation_res_recv_total'
          '{app_id="checkout",src_app_id="orders",status="200"}')  # fmt: skip
    wait_for(prometheus, ok, 6)
    assert query(prometheus, "dapr_runtime_service_invocation_res_recv_latency_ms_bucket")
    assert query(prometheus, 'dapr_http_server_request_count{app_id="checkout"}')
    assert query(prometheus, 'dapr_http_client_completed_count{app_id="orders"}')
    assert query(prometheus, 'dapr_grpc_io_server_completed_rpcs{app_id="orders"}')
    loaded = 'dapr_resiliency_loaded{app_id="checkout",name="metricsdemo"}'
    wait_for(prometheus, loaded, 1)
    retries = ('dapr_resiliency_activations_total{app_id="checkout",policy="retry",'
               'target="app_orders"}')  # fmt: skip
    assert value(query(prometheus, retries)) >= 2
    state = 'dapr_resiliency_cb_state{app_id="checkout",target="app_orders"}'
    assert 2.0 in [float(r["value"][1]) for r in query(prometheus, state)]  # type: ignore[index]


def test_metrics_port_in_use_is_a_clear_error(cluster: Cluster) -> None:
    port = free_port()
    holder = cluster.sidecar("holder", mtls=False, extra=("--metrics-port", str(port)))
    assert holder.process.poll() is None
    result = cluster.tether(
        "sidecar", "--app-id", "second", "--dapr-http-port", str(free_port()),
        "--metrics-port", str(port), "--metrics-listen-address", "127.0.0.1",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on metrics port {port}" in result.stderr
    assert "Traceback" not in result.stderr
