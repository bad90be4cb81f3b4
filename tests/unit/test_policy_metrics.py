"""dapr_resiliency_count / _activations_total for outbound calls, on the real Metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy.hop.policy_metrics import PolicyMetrics
from proxy.observability.metrics import Metrics
from resiliency import ResiliencyEngine
from resiliency.loader import load_texts

FIRST = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: first}
spec:
  policies:
    timeouts: {short: 1s}
    retries: {twice: {policy: constant, duration: 10ms, maxRetries: 2}}
  targets:
    apps:
      orders: {timeout: short, retry: twice}
"""
SECOND = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: second}
spec:
  policies:
    timeouts: {long: 9s}
  targets:
    apps:
      billing: {timeout: long}
"""


def engine(*texts: str) -> ResiliencyEngine:
    config, report = load_texts([(f"{i}.yaml", t) for i, t in enumerate(texts)], "checkout")
    assert not report.problems
    return ResiliencyEngine(config)


def samples(metrics: Metrics, family: str) -> dict[tuple[str, str, str], float]:
    """(name, policy, target) -> value, for the outbound series of ``family``."""
    text, _ = metrics.exposition()
    found: dict[tuple[str, str, str], float] = {}
    for parsed in text_string_to_metric_families(text.decode()):
        for sample in parsed.samples:
            if sample.name.startswith(family):
                labels = sample.labels
                assert (labels["app_id"], labels["namespace"]) == ("checkout", "shop")
                assert labels["flow_direction"] == "outbound"
                found[(labels["name"], labels["policy"], labels["target"])] = sample.value
    return found


def test_each_present_policy_counts_once_per_call_and_a_retry_fires_once() -> None:
    metrics = Metrics("checkout")
    resiliency = engine(FIRST, SECOND)
    policy = PolicyMetrics(metrics, resiliency, "shop")
    applied = resiliency.policy_for("orders")
    policy.applied(applied, "orders", retried=False)
    policy.applied(applied, "orders", retried=True)
    policy.fired("timeout", "orders")
    # Dapr labels with the resource loaded last.
    assert samples(metrics, "dapr_resiliency_count") == {
        ("second", "timeout", "app_orders"): 2.0,
        ("second", "retry", "app_orders"): 2.0,
    }
    assert samples(metrics, "dapr_resiliency_activations") == {
        ("second", "retry", "app_orders"): 1.0,
        ("second", "timeout", "app_orders"): 1.0,
    }


def test_nothing_is_counted_without_a_resiliency_resource() -> None:
    metrics = Metrics("checkout")
    resiliency = engine()
    policy = PolicyMetrics(metrics, resiliency, "shop")
    policy.applied(resiliency.policy_for("orders"), "orders", retried=True)
    policy.fired("timeout", "orders")
    assert samples(metrics, "dapr_resiliency") == {}
