"""``dapr_resiliency_count`` and ``dapr_resiliency_activations_total`` for the
policies applied to outbound calls, labelled the way daprd labels them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resiliency import ResiliencyEngine
from resiliency.lookup import AppPolicy

if TYPE_CHECKING:
    # Types only: prometheus_client loads when metrics are on, not in every sidecar.
    from proxy.observability.metrics import Metrics

_OUTBOUND = "outbound"


class PolicyMetrics:
    def __init__(self, metrics: Metrics, resiliency: ResiliencyEngine, namespace: str) -> None:
        self._metrics = metrics
        self._resiliency = resiliency
        self._namespace = namespace

    def _name(self) -> str:
        # Dapr labels with the resource that was loaded last (read per call: reloads swap it).
        names = self._resiliency.config.resource_names
        return names[-1] if names else ""

    def applied(self, policy: AppPolicy, app_id: str, *, retried: bool) -> None:
        """Once per call per policy kind present; a retry counts as fired once per call."""
        name = self._name()
        if not name:
            return
        target = f"app_{app_id}"
        for kind, present in (
            ("timeout", policy.timeout),
            ("retry", policy.retry),
            ("circuitbreaker", policy.circuit_breaker),
        ):
            if present is not None:
                self._metrics.resiliency_count(name, kind, self._namespace, _OUTBOUND, target)
        if retried and policy.retry is not None:
            self._metrics.resiliency_activation(name, "retry", self._namespace, _OUTBOUND, target)

    def fired(self, kind: str, app_id: str) -> None:
        """A policy of ``kind`` acted on one attempt (e.g. a timeout expired)."""
        name = self._name()
        if name:
            self._metrics.resiliency_activation(
                name, kind, self._namespace, _OUTBOUND, f"app_{app_id}"
            )
