"""Every metric the shipped Grafana dashboard queries is emitted by running
sidecars once traffic has exercised it: calls that succeed, are retried, time
out and trip a circuit breaker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster, free_port, request

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tether-invocation.json"
METRIC = re.compile(r"\bdapr_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: dashboard}
scopes: [checkout]
spec:
  policies:
    timeouts:
      short: 200ms
    retries:
      twice: {policy: constant, duration: 10ms, maxRetries: 2}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 60s, trip: consecutiveFailures > 2}
  targets:
    apps:
      orders: {timeout: short, retry: twice, circuitBreaker: cb}
"""


def dashboard() -> dict[str, object]:
    document = json.loads(DASHBOARD.read_text())
    assert isinstance(document, dict)
    return document


def queries(node: object) -> list[str]:
    """Every PromQL text in the dashboard: targets' ``expr`` and variables' ``query``."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                found.append(value)
            else:
                found += queries(value)
    elif isinstance(node, list):
        for item in node:
            found += queries(item)
    return found


class Exposition:
    """One sidecar's /metrics: sample lines and ``# TYPE`` declarations."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
                continue
            match = _SAMPLE.match(line)
            if match is not None:
                labels = dict(_LABEL.findall(match.group(2) or ""))
                self.samples.append((match.group(1), labels, float(match.group(3))))

    def named(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, value) for sample, labels, value in self.samples if sample == name]


def scrape(port: int) -> Exposition:
    response = request(port, "GET", "/metrics")
    assert response.status == 200
    return Exposition(response.body.decode())


def family_of(name: str, expositions: list[Exposition]) -> str:
    """The family a queried sample name belongs to: a histogram's _bucket/_sum/_count
    belong to the histogram, but a counter that merely ends in _count is its own."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and any(e.types.get(base) == "histogram" for e in expositions):
            return base
    return name


def test_dashboard_is_valid_json_and_every_panel_queries_something() -> None:
    document = dashboard()
    panels = document["panels"]
    assert isinstance(panels, list) and panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        targets = panel.get("targets")
        assert isinstance(targets, list) and targets, panel.get("title")
        for target in targets:
            assert isinstance(target.get("expr"), str) and METRIC.search(target["expr"]), target
    assert queries(document)


@pytest.fixture
def exercised(cluster: Cluster) -> list[Exposition]:
    """orders + checkout after calls that succeed, retry, time out and trip the breaker."""
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
    port = checkout.http_port
    invoke = "/v1.0/invoke/orders/method"

    for _ in range(3):
        assert request(port, "POST", f"{invoke}/neworder", body=b"{}").status == 200
    # Fails twice, answered on the third attempt: a retried call.
    assert request(port, "GET", f"{invoke}/fail/2/500/x").status == 200
    # Every attempt outlives the 200ms timeout.
    slow = request(port, "GET", f"{invoke}/slow/1000")
    assert slow.status == 500, slow.body
    assert "deadline" in slow.json()["message"]  # type: ignore[index]
    # Always failing: the breaker (already counting the timed-out attempts) opens.
    for _ in range(2):
        assert request(port, "GET", f"{invoke}/fail/99/500/y").status == 500
    return [scrape(orders_metrics), scrape(checkout_metrics)]


def test_every_dashboard_metric_is_emitted(exercised: list[Exposition]) -> None:
    names = sorted({m for text in queries(dashboard()) for m in METRIC.findall(text)})
    assert names, "the dashboard queries no dapr_ metric"
    missing = []
    for name in names:
        family = family_of(name, exercised)
        declared = [e.types[family] for e in exercised if family in e.types]
        # The exact sample name the query reads (e.g. ..._bucket) has a sample somewhere.
        if not declared or not any(e.named(name) for e in exercised):
            missing.append(f"{name} (family {family}, declared {declared})")
    assert not missing, missing


def test_dashboard_panels_filters_find_series(exercised: list[Exposition]) -> None:
    """The label filters the resiliency panels use match real series."""
    checkout = exercised[1]
    activations = checkout.named("dapr_resiliency_activations_total")
    for policy in ("retry", "timeout"):
        fired = [value for labels, value in activations if labels.get("policy") == policy]
        assert fired and sum(fired) >= 1, (policy, activations)
    states = checkout.named("dapr_resiliency_cb_state")
    assert 2.0 in [value for labels, value in states if labels.get("target") == "app_orders"]
    errors = [
        value
        for labels, value in checkout.named("dapr_runtime_service_invocation_res_recv_total")
        if not re.fullmatch(r"[23]..", labels.get("status", ""))
    ]
    assert errors and sum(errors) >= 1
    assert checkout.named("dapr_http_server_request_count")
