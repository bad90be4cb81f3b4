"""A hop to a peer sidecar that fails, or that a timeout policy cuts short, is
counted in ``dapr_grpc_io_client_*`` with its real gRPC status, as scraped from
the calling sidecar's metrics port."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Cluster, free_port, request

RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: hops}
scopes: [checkout]
spec:
  policies:
    timeouts:
      short: 300ms
  targets:
    apps:
      inventory: {timeout: short}
"""

MUX_CALL = "/tether.internal.v1.Multiplex/Call"


def completed_rpcs(metrics_port: int) -> dict[tuple[str, str], float]:
    """(grpc_client_method, grpc_client_status) -> calls, from the sidecar's /metrics."""
    response = request(metrics_port, "GET", "/metrics")
    assert response.status == 200
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            if sample.name.startswith("dapr_grpc_io_client_completed_rpcs"):
                key = (sample.labels["grpc_client_method"], sample.labels["grpc_client_status"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def test_failed_and_timed_out_hops_record_their_grpc_status(cluster: Cluster) -> None:
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    orders_app = cluster.app("orders")
    inventory_app = cluster.app("inventory")
    cluster.sidecar("orders", orders_app)
    cluster.sidecar("inventory", inventory_app)
    metrics_port = free_port()
    checkout = cluster.sidecar(
        "checkout",
        extra=("--metrics-port", str(metrics_port), "--resources-path", str(resources)),
    )
    port = checkout.http_port

    assert request(port, "POST", "/v1.0/invoke/orders/method/ok", body=b"{}").status == 200
    # The orders sidecar is up but its app is gone: the callee answers INTERNAL.
    cluster.stop(orders_app.process)
    down = request(port, "POST", "/v1.0/invoke/orders/method/lost", body=b"{}")
    assert down.status == 500, down.body
    # The inventory app answers after 5 s; the 300ms timeout cuts the hop.
    slow = request(port, "GET", "/v1.0/invoke/inventory/method/slow/5000")
    assert slow.status == 500, slow.body
    assert "context deadline exceeded" in slow.json()["message"]  # type: ignore[index]

    counts = completed_rpcs(metrics_port)
    assert counts.get((MUX_CALL, "OK")) == 1.0, counts
    assert counts.get((MUX_CALL, "INTERNAL"), 0.0) >= 1.0, counts
    assert counts.get((MUX_CALL, "DEADLINE_EXCEEDED")) == 1.0, counts
