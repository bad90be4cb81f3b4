"""The metrics recording API: one method per thing that happened, Dapr's labels filled in.

What a family is called and how it is exported lives in ``dapr_metrics`` and
``dapr_exposition``; the series cap in ``series_cap``; the HTTP label rules in
``metric_settings``. The sidecar makes a ``Metrics`` only when metrics are enabled.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, PlatformCollector, ProcessCollector

from proxy.observability.dapr_exposition import DaprCollector, Export, exposition
from proxy.observability.dapr_metrics import DaprFamilies
from proxy.observability.metric_settings import HttpLabels, MetricSettings
from proxy.observability.resolution_metrics import ResolutionFamilies

# Seconds; a healthy loop stays in the first buckets, a stall shows in the last.
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_LAG = "tether_event_loop_lag_seconds"

# Dapr's circuit-breaker states and the values its cb_state gauge documents.
_CB_STATE_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


class Metrics:
    """Every metric tether exports, in a registry of its own."""

    def __init__(self, app_id: str, settings: MetricSettings | None = None) -> None:
        settings = settings or MetricSettings()
        self._app_id = app_id
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        self._collector = DaprCollector()
        self._registry.register(self._collector)
        self._f = DaprFamilies(
            app_id,
            self._collector,
            latency_buckets=settings.latency_buckets,
            max_series=settings.max_series_per_metric,
            response_count=settings.increased_cardinality,
        )
        self._r = ResolutionFamilies(self._collector, max_series=settings.max_series_per_metric)
        self._http_labels = HttpLabels(settings)
        doc = "How late the sidecar's event loop ran a timer due every 0.5 s (loop_lag)."
        lag = Histogram(LOOP_LAG, doc, ("app_id",), buckets=_LAG_BUCKETS, registry=None)
        self._collector.add(Export(LOOP_LAG, doc, "histogram", lag))
        self._loop_lag = lag.labels(app_id)
        self._cb_keys: dict[tuple[str, ...], tuple[str, ...]] = {}

    # -- service invocation ------------------------------------------------------------

    def req_sent(self, dst_app_id: str, streaming: bool) -> None:
        """Caller: one remote attempt sent to ``dst_app_id``."""
        kind = "streaming" if streaming else "unary"
        self._f.req_sent.child((self._app_id, dst_app_id, kind)).inc()

    def res_recv(self, src_app_id: str, status: str, streaming: bool, latency_ms: float) -> None:
        """Caller: the response from ``src_app_id`` (the callee) arrived."""
        app = self._app_id
        kind = "streaming" if streaming else "unary"
        self._f.res_recv.child((app, src_app_id, status, kind)).inc()
        self._f.res_recv_latency.child((app, src_app_id, status)).observe(latency_ms)

    def req_recv(self, src_app_id: str) -> None:
        """Callee: a request from ``src_app_id`` arrived."""
        self._f.req_recv.child((self._app_id, src_app_id)).inc()

    def res_sent(self, dst_app_id: str, status: str) -> None:
        """Callee: the response to ``dst_app_id`` (the caller) was sent."""
        self._f.res_sent.child((self._app_id, dst_app_id, status)).inc()

    def acl_decision(
        self, by: str, allowed: bool, app_id: str, trust_domain: str, namespace: str
    ) -> None:
        """Callee: access control decided a call by the ``app`` or ``global`` action;
        the labels name the caller ("" when it has no verified identity)."""
        self._f.acl[(by, allowed)].child((app_id, trust_domain, namespace)).inc()

    # -- HTTP --------------------------------------------------------------------------

    def http_server(
        self,
        method: str,
        path: str,
        status: int,
        latency_ms: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """One request served on the Dapr HTTP API port."""
        method, path = self._http_labels(method, path)
        key = (self._app_id, method, path, str(status))
        self._f.srv_requests.child(key).inc()
        self._f.srv_latency.child(key).observe(latency_ms)
        if self._f.srv_responses is not None:
            self._f.srv_responses.child(key).inc()
        self._f.srv_request_bytes.observe(request_bytes)
        self._f.srv_response_bytes.observe(response_bytes)

    def http_client(
        self,
        method: str,
        path: str,
        status: int,
        latency_ms: float,
        sent_bytes: int,
        received_bytes: int,
    ) -> None:
        """One HTTP call from the sidecar to its app."""
        method, path = self._http_labels(method, path)
        key = (self._app_id, method, path, str(status))
        self._f.cli_completed.child(key).inc()
        self._f.cli_latency.child(key).observe(latency_ms)
        self._f.cli_sent_bytes.child(key).observe(sent_bytes)
        self._f.cli_received_bytes.observe(received_bytes)

    # -- gRPC --------------------------------------------------------------------------

    def grpc_server(
        self, method: str, status: str, latency_ms: float, received_bytes: int, sent_bytes: int
    ) -> None:
        """One RPC served (``method`` is the full ``/package.Service/Method``)."""
        key = (self._app_id, method, status)
        self._f.gs_completed.child(key).inc()
        self._f.gs_latency.child(key).observe(latency_ms)
        short = key[:2]
        self._f.gs_received.child(short).observe(received_bytes)
        self._f.gs_sent.child(short).observe(sent_bytes)

    def grpc_client(
        self, method: str, status: str, latency_ms: float, sent_bytes: int, received_bytes: int
    ) -> None:
        """One RPC made by the sidecar (to a peer sidecar or to the app)."""
        key = (self._app_id, method, status)
        self._f.gc_completed.child(key).inc()
        self._f.gc_latency.child(key).observe(latency_ms)
        short = key[:2]
        self._f.gc_sent.child(short).observe(sent_bytes)
        self._f.gc_received.child(short).observe(received_bytes)

    # -- resiliency --------------------------------------------------------------------

    def resiliency_loaded(self, name: str, namespace: str) -> None:
        """A Resiliency resource was loaded."""
        self._f.res_loaded.child((self._app_id, name, namespace)).inc()

    def resiliency_count(
        self,
        name: str,
        policy: str,
        namespace: str,
        flow_direction: str,
        target: str,
        status: str = "",
    ) -> None:
        """A policy of kind ``policy`` was applied to one operation."""
        key = (self._app_id, name, policy, namespace, flow_direction, target, status)
        self._f.res_count.child(key).inc()

    def resiliency_activation(
        self,
        name: str,
        policy: str,
        namespace: str,
        flow_direction: str,
        target: str,
        status: str = "",
    ) -> None:
        """A policy fired: a timeout expired, an operation was retried, a breaker moved."""
        key = (self._app_id, name, policy, namespace, flow_direction, target, status)
        self._f.res_activations.child(key).inc()

    def cb_state(self, name: str, namespace: str, target: str, state: str) -> None:
        """A circuit breaker's state is now ``state`` (closed, half-open, open).

        One series per breaker: its ``status`` label carries the current state and its
        value the number Dapr documents; the previous state's series is removed.
        """
        status = state.strip().lower().replace("_", "-")
        value = _CB_STATE_VALUES.get(status)
        if value is None:
            status, value = "unknown", -1.0
        wanted = (self._app_id, name, "circuitbreaker", namespace, "outbound", target, status)
        key, child = self._f.cb_state.bind(wanted)
        breaker = key[:-1]
        previous = self._cb_keys.get(breaker)
        if previous is not None and previous != key:
            self._f.cb_state.drop(previous)
        self._cb_keys[breaker] = key
        child.set(value)

    # -- name resolution (see resolution_metrics) -----------------------------------------

    def resolution_lookup(self, app_id: str, namespace: str, result: str) -> None:
        self._r.lookups.child((self._app_id, app_id, namespace, result)).inc()

    def resolution_failed(self, app_id: str, namespace: str, reason: str) -> None:
        self._r.failures.child((self._app_id, app_id, namespace, reason)).inc()

    def resolution_stale(self, app_id: str, namespace: str, age: float) -> None:
        key = (self._app_id, app_id, namespace)
        self._r.stale.child(key).inc()
        self._r.age.child(key).set(age)

    def resolution_answer(self, app_id: str, namespace: str, instances: int) -> None:
        key = (self._app_id, app_id, namespace)
        self._r.age.child(key).set(0)
        self._r.instances.child(key).set(instances)

    def resolution_ejection(self, app_id: str, namespace: str, ejected: int) -> None:
        key = (self._app_id, app_id, namespace)
        self._r.ejections.child(key).inc()
        self._r.ejected.child(key).set(ejected)

    def resolution_returned(self, app_id: str, namespace: str, ejected: int) -> None:
        self._r.ejected.child((self._app_id, app_id, namespace)).set(ejected)

    def event_loop_lag(self, seconds: float) -> None:
        """The loop ran a timer ``seconds`` after it was due (``loop_lag.LoopLagTimer``)."""
        self._loop_lag.observe(seconds)

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (format 0.0.4) and its content type."""
        return exposition(self._registry, self._collector)
