"""Prometheus metrics with Dapr's names, types, labels and buckets, plus a series cap.

Dapr exports through OpenCensus: every metric is ``dapr_`` + the measure name with ``/``
and ``.`` turned into ``_``; Count views are counters, Distribution views histograms
and LastValue views gauges. Its counters keep the view name as-is, so some end in
``_total`` (``dapr_runtime_service_invocation_req_sent_total``) and some do not
(``dapr_http_server_request_count``). prometheus-client always names a counter's
samples ``<name>_total`` and its ``# TYPE`` line likewise, so the values live in
prometheus-client metric objects and one collector re-exports them under Dapr's
exact names (see ``_DaprCollector`` and ``Metrics.exposition``).

The cap (tether's addition): every family keeps at most ``max_series_per_metric``
label combinations. Past that, a new combination is recorded with its high-cardinality
label values (paths, verbs, app ids, gRPC methods, resiliency names and targets)
replaced by ``_overflow``, and one warning per family goes to logger
``tether.metrics``. Low-cardinality labels (status codes, ``type``, policy kind,
flow direction) are kept, so the overflow series stay few and still say something.

Byte-size histograms use Dapr's own ``defaultSizeDistribution``: 1 KiB, 2 KiB, 4 KiB,
16 KiB, 64 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB, 64 MiB, 256 MiB, 1 GiB, 4 GiB.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "DAPR_BYTE_BUCKETS",
    "DAPR_LATENCY_BUCKETS_MS",
    "OVERFLOW",
    "MetricSettings",
    "Metrics",
    "PathTemplates",
]

_log = logging.getLogger("tether.metrics")

OVERFLOW = "_overflow"

DAPR_LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200,
    250, 300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip

DAPR_BYTE_BUCKETS: tuple[float, ...] = (
    1024, 2048, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
    268435456, 1073741824, 4294967296,
)  # fmt: skip

# Dapr's circuit-breaker states and the values its cb_state gauge documents.
_CB_STATE_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


@dataclass(frozen=True)
class MetricSettings:
    """Dapr's ``spec.metric`` with Dapr's defaults, plus tether's series cap."""

    enabled: bool = True
    increased_cardinality: bool = True
    path_matching: tuple[str, ...] = ()
    exclude_verbs: bool = False
    latency_buckets: tuple[float, ...] = DAPR_LATENCY_BUCKETS_MS
    max_series_per_metric: int = 1000

    def __post_init__(self) -> None:
        if self.max_series_per_metric < 1:
            raise ValueError("max_series_per_metric must be at least 1")
        buckets = self.latency_buckets
        if not buckets or any(b >= c for b, c in pairwise(buckets)):
            raise ValueError("latency_buckets must be a non-empty, strictly increasing list")


class PathTemplates:
    """Dapr's ``pathMatching`` templates, compiled once; ``match`` is pure.

    A template is ``/``-separated segments; ``{name}`` matches exactly one non-empty
    segment, anything else matches itself. When several templates match, the one with
    the most literal segments wins, then the one listed first.
    """

    __slots__ = ("_by_length",)

    def __init__(self, templates: Sequence[str]) -> None:
        compiled: dict[int, list[tuple[int, int, tuple[str | None, ...], str]]] = {}
        for index, template in enumerate(templates):
            segments = tuple(
                None if s.startswith("{") and s.endswith("}") and len(s) > 2 else s
                for s in _segments(template)
            )
            literals = sum(s is not None for s in segments)
            compiled.setdefault(len(segments), []).append((-literals, index, segments, template))
        self._by_length: dict[int, tuple[tuple[tuple[str | None, ...], str], ...]] = {
            length: tuple((segs, tpl) for _, _, segs, tpl in sorted(entries))
            for length, entries in compiled.items()
        }

    def __bool__(self) -> bool:
        return bool(self._by_length)

    def match(self, path: str) -> str | None:
        """The template ``path`` matches, or None."""
        segments = _segments(path)
        for pattern, template in self._by_length.get(len(segments), ()):
            for want, got in zip(pattern, segments, strict=True):
                if (want is None and not got) or (want is not None and want != got):
                    break
            else:
                return template
        return None


def _segments(path: str) -> list[str]:
    path = path.partition("?")[0]
    return path[1:].split("/") if path.startswith("/") else path.split("/")


_M = TypeVar("_M", Counter, Gauge, Histogram)


class _Family(Generic[_M]):
    """One metric family: its bound children, the cap and the overflow rule."""

    __slots__ = ("_children", "_limit", "_lock", "_overflow_at", "_warned", "metric", "name")

    def __init__(self, name: str, metric: _M, overflow_labels: Iterable[int], limit: int) -> None:
        self.name = name
        self.metric: _M = metric
        self._overflow_at = frozenset(overflow_labels)
        self._limit = limit
        self._children: dict[tuple[str, ...], _M] = {}
        self._lock = threading.Lock()
        self._warned = False

    def child(self, key: tuple[str, ...]) -> _M:
        found = self._children.get(key)
        if found is not None:
            return found
        return self.bind(key)[1]

    def bind(self, key: tuple[str, ...]) -> tuple[tuple[str, ...], _M]:
        """The key actually used (maybe the overflow one) and its child."""
        with self._lock:
            found = self._children.get(key)
            if found is not None:
                return key, found
            if len(self._children) >= self._limit:
                key = tuple(OVERFLOW if i in self._overflow_at else v for i, v in enumerate(key))
                found = self._children.get(key)
                if found is not None:
                    return key, found
                if not self._warned:
                    self._warned = True
                    _log.warning(
                        "metric %s reached %d series; new label values are recorded as %r",
                        self.name,
                        self._limit,
                        OVERFLOW,
                    )
            created = self.metric.labels(*key)
            self._children[key] = created
            return key, created

    def drop(self, key: tuple[str, ...]) -> None:
        with self._lock:
            if self._children.pop(key, None) is not None:
                self.metric.remove(*key)

    def __len__(self) -> int:
        return len(self._children)


@dataclass(frozen=True)
class _Export:
    name: str
    documentation: str
    kind: str  # counter | gauge | histogram
    source: Counter | Gauge | Histogram


class _DaprCollector(Collector):
    """Re-exports prometheus-client metrics under Dapr's exact names, without ``_created``."""

    def __init__(self) -> None:
        self._exports: list[_Export] = []

    def add(self, export: _Export) -> None:
        self._exports.append(export)

    def collect(self) -> Iterable[Metric]:
        for export in self._exports:
            family = export.name
            if export.kind == "counter" and family.endswith("_total"):
                family = family[: -len("_total")]  # the exposition adds it back
            out = Metric(family, export.documentation, export.kind)
            for collected in export.source.collect():
                for sample in collected.samples:
                    if sample.name.endswith("_created"):
                        continue
                    name = export.name if export.kind == "counter" else sample.name
                    out.add_sample(name, sample.labels, sample.value)
            yield out


class Metrics:
    """Every metric tether exports, in a registry of its own."""

    def __init__(self, app_id: str, settings: MetricSettings | None = None) -> None:
        self.app_id = app_id
        self.settings = settings = settings or MetricSettings()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._collector = _DaprCollector()
        self.registry.register(self._collector)
        self._bare_counters: list[str] = []
        self._enabled = settings.enabled
        self._increased = settings.increased_cardinality
        self._exclude_verbs = settings.exclude_verbs
        self._paths = PathTemplates(settings.path_matching)
        self._cb_keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        lat = settings.latency_buckets

        svc = "dapr_runtime_service_invocation_"
        self._req_sent = self._counter(
            svc + "req_sent_total",
            "Number of requests sent for service invocation.",
            ("app_id", "dst_app_id", "type"),
            overflow=(1,),
        )
        self._req_recv = self._counter(
            svc + "req_recv_total",
            "Number of requests received for service invocation.",
            ("app_id", "src_app_id"),
            overflow=(1,),
        )
        self._res_sent = self._counter(
            svc + "res_sent_total",
            "Number of responses sent for service invocation.",
            ("app_id", "dst_app_id", "status"),
            overflow=(1,),
        )
        self._res_recv = self._counter(
            svc + "res_recv_total",
            "Number of responses received for service invocation.",
            ("app_id", "src_app_id", "status", "type"),
            overflow=(1,),
        )
        self._res_recv_latency = self._histogram(
            svc + "res_recv_latency_ms",
            "Response latency in milliseconds for service invocation.",
            ("app_id", "src_app_id", "status"),
            lat,
            overflow=(1,),
        )

        http_labels = ("app_id", "method", "path", "status")
        self._srv_requests = self._counter(
            "dapr_http_server_request_count",
            "Number of HTTP requests started in server.",
            http_labels,
            overflow=(1, 2),
        )
        self._srv_latency = self._histogram(
            "dapr_http_server_latency",
            "HTTP request end-to-end latency in server, in milliseconds.",
            http_labels,
            lat,
            overflow=(1, 2),
        )
        self._srv_responses = (
            self._counter(
                "dapr_http_server_response_count",
                "The number of HTTP responses.",
                http_labels,
                overflow=(1, 2),
            )
            if self._increased
            else None
        )
        self._srv_request_bytes = self._histogram(
            "dapr_http_server_request_bytes",
            "HTTP request body size in server, in bytes.",
            ("app_id",),
            DAPR_BYTE_BUCKETS,
        ).child((app_id,))
        self._srv_response_bytes = self._histogram(
            "dapr_http_server_response_bytes",
            "HTTP response body size in server, in bytes.",
            ("app_id",),
            DAPR_BYTE_BUCKETS,
        ).child((app_id,))

        self._cli_completed = self._counter(
            "dapr_http_client_completed_count",
            "Count of completed requests to the app.",
            http_labels,
            overflow=(1, 2),
        )
        self._cli_latency = self._histogram(
            "dapr_http_client_roundtrip_latency",
            "Time from the first byte of the request to the last byte of the response, in ms.",
            http_labels,
            lat,
            overflow=(1, 2),
        )
        self._cli_sent_bytes = self._histogram(
            "dapr_http_client_sent_bytes",
            "Total bytes sent in request bodies to the app.",
            http_labels,
            DAPR_BYTE_BUCKETS,
            overflow=(1, 2),
        )
        self._cli_received_bytes = self._histogram(
            "dapr_http_client_received_bytes",
            "Total bytes received in response bodies from the app.",
            ("app_id",),
            DAPR_BYTE_BUCKETS,
        ).child((app_id,))

        gs = ("app_id", "grpc_server_method", "grpc_server_status")
        self._gs_completed = self._counter(
            "dapr_grpc_io_server_completed_rpcs",
            "Count of RPCs by method and status.",
            gs,
            overflow=(1,),
        )
        self._gs_latency = self._histogram(
            "dapr_grpc_io_server_server_latency",
            "Time from receiving a request to sending the last response, in milliseconds.",
            gs,
            lat,
            overflow=(1,),
        )
        self._gs_received = self._histogram(
            "dapr_grpc_io_server_received_bytes_per_rpc",
            "Total bytes received per RPC.",
            gs[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )
        self._gs_sent = self._histogram(
            "dapr_grpc_io_server_sent_bytes_per_rpc",
            "Total bytes sent per RPC.",
            gs[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )
        gc = ("app_id", "grpc_client_method", "grpc_client_status")
        self._gc_completed = self._counter(
            "dapr_grpc_io_client_completed_rpcs",
            "Count of RPCs by method and status.",
            gc,
            overflow=(1,),
        )
        self._gc_latency = self._histogram(
            "dapr_grpc_io_client_roundtrip_latency",
            "Time from the first byte sent to the last byte received, in milliseconds.",
            gc,
            lat,
            overflow=(1,),
        )
        self._gc_sent = self._histogram(
            "dapr_grpc_io_client_sent_bytes_per_rpc",
            "Total bytes sent per RPC.",
            gc[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )
        self._gc_received = self._histogram(
            "dapr_grpc_io_client_received_bytes_per_rpc",
            "Total bytes received per RPC.",
            gc[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )

        policy_labels = (
            "app_id",
            "name",
            "policy",
            "namespace",
            "flow_direction",
            "target",
            "status",
        )
        self._res_loaded = self._counter(
            "dapr_resiliency_loaded",
            "Number of resiliency policies loaded.",
            ("app_id", "name", "namespace"),
            overflow=(1, 2),
        )
        self._res_count = self._counter(
            "dapr_resiliency_count",
            "Number of times a resiliency policy has been applied.",
            policy_labels,
            overflow=(1, 3, 5),
        )
        self._res_activations = self._counter(
            "dapr_resiliency_activations_total",
            "Number of times a resiliency policy has been activated after a failure "
            "or a state change.",
            policy_labels,
            overflow=(1, 3, 5),
        )
        cb_doc = "A circuit breaker's current state: 0 closed, 1 half-open, 2 open, -1 unknown."
        self._cb_state = self._family(
            "dapr_resiliency_cb_state",
            cb_doc,
            Gauge("dapr_resiliency_cb_state", cb_doc, policy_labels, registry=None),
            "gauge",
            (1, 3, 5),
        )

    # -- construction helpers ----------------------------------------------------------

    def _family(
        self, name: str, doc: str, metric: _M, kind: str, overflow: Iterable[int]
    ) -> _Family[_M]:
        self._collector.add(_Export(name, doc, kind, metric))
        return _Family(name, metric, overflow, self.settings.max_series_per_metric)

    def _counter(
        self, name: str, doc: str, labels: Sequence[str], overflow: Iterable[int] = ()
    ) -> _Family[Counter]:
        if not name.endswith("_total"):
            self._bare_counters.append(name)
        metric = Counter(name, doc, labels, registry=None)
        return self._family(name, doc, metric, "counter", overflow)

    def _histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        overflow: Iterable[int] = (),
    ) -> _Family[Histogram]:
        metric = Histogram(name, doc, labels, registry=None, buckets=buckets)
        return self._family(name, doc, metric, "histogram", overflow)

    # -- service invocation ------------------------------------------------------------

    def req_sent(self, dst_app_id: str, streaming: bool) -> None:
        """Caller: one remote attempt sent to ``dst_app_id``."""
        if self._enabled:
            kind = "streaming" if streaming else "unary"
            self._req_sent.child((self.app_id, dst_app_id, kind)).inc()

    def res_recv(self, src_app_id: str, status: str, streaming: bool, latency_ms: float) -> None:
        """Caller: the response from ``src_app_id`` (the callee) arrived."""
        if self._enabled:
            app = self.app_id
            kind = "streaming" if streaming else "unary"
            self._res_recv.child((app, src_app_id, status, kind)).inc()
            self._res_recv_latency.child((app, src_app_id, status)).observe(latency_ms)

    def req_recv(self, src_app_id: str) -> None:
        """Callee: a request from ``src_app_id`` arrived."""
        if self._enabled:
            self._req_recv.child((self.app_id, src_app_id)).inc()

    def res_sent(self, dst_app_id: str, status: str) -> None:
        """Callee: the response to ``dst_app_id`` (the caller) was sent."""
        if self._enabled:
            self._res_sent.child((self.app_id, dst_app_id, status)).inc()

    # -- HTTP --------------------------------------------------------------------------

    def http_labels(self, method: str, path: str) -> tuple[str, str]:
        """The ``method`` and ``path`` label values Dapr's ``spec.metric.http`` asks for."""
        template = self._paths.match(path) if self._paths else None
        if template is not None:
            path = template
        elif not self._increased:
            path = ""
        elif "?" in path:
            path = path.partition("?")[0]
        return ("" if self._exclude_verbs else method), path

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
        if not self._enabled:
            return
        method, path = self.http_labels(method, path)
        key = (self.app_id, method, path, str(status))
        self._srv_requests.child(key).inc()
        self._srv_latency.child(key).observe(latency_ms)
        if self._srv_responses is not None:
            self._srv_responses.child(key).inc()
        self._srv_request_bytes.observe(request_bytes)
        self._srv_response_bytes.observe(response_bytes)

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
        if not self._enabled:
            return
        method, path = self.http_labels(method, path)
        key = (self.app_id, method, path, str(status))
        self._cli_completed.child(key).inc()
        self._cli_latency.child(key).observe(latency_ms)
        self._cli_sent_bytes.child(key).observe(sent_bytes)
        self._cli_received_bytes.observe(received_bytes)

    # -- gRPC --------------------------------------------------------------------------

    def grpc_server(
        self, method: str, status: str, latency_ms: float, received_bytes: int, sent_bytes: int
    ) -> None:
        """One RPC served (``method`` is the full ``/package.Service/Method``)."""
        if not self._enabled:
            return
        key = (self.app_id, method, status)
        self._gs_completed.child(key).inc()
        self._gs_latency.child(key).observe(latency_ms)
        short = key[:2]
        self._gs_received.child(short).observe(received_bytes)
        self._gs_sent.child(short).observe(sent_bytes)

    def grpc_client(
        self, method: str, status: str, latency_ms: float, sent_bytes: int, received_bytes: int
    ) -> None:
        """One RPC made by the sidecar (to a peer sidecar or to the app)."""
        if not self._enabled:
            return
        key = (self.app_id, method, status)
        self._gc_completed.child(key).inc()
        self._gc_latency.child(key).observe(latency_ms)
        short = key[:2]
        self._gc_sent.child(short).observe(sent_bytes)
        self._gc_received.child(short).observe(received_bytes)

    # -- resiliency --------------------------------------------------------------------

    def resiliency_loaded(self, name: str, namespace: str) -> None:
        """A Resiliency resource was loaded."""
        if self._enabled:
            self._res_loaded.child((self.app_id, name, namespace)).inc()

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
        if self._enabled:
            key = (self.app_id, name, policy, namespace, flow_direction, target, status)
            self._res_count.child(key).inc()

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
        if self._enabled:
            key = (self.app_id, name, policy, namespace, flow_direction, target, status)
            self._res_activations.child(key).inc()

    def cb_state(self, name: str, namespace: str, target: str, state: str) -> None:
        """A circuit breaker's state is now ``state`` (closed, half-open, open).

        One series per breaker: its ``status`` label carries the current state and its
        value the number Dapr documents; the previous state's series is removed.
        """
        if not self._enabled:
            return
        status = state.strip().lower().replace("_", "-")
        value = _CB_STATE_VALUES.get(status)
        if value is None:
            status, value = "unknown", -1.0
        wanted = (self.app_id, name, "circuitbreaker", namespace, "outbound", target, status)
        key, child = self._cb_state.bind(wanted)
        breaker = key[:-1]
        previous = self._cb_keys.get(breaker)
        if previous is not None and previous != key:
            self._cb_state.drop(previous)
        self._cb_keys[breaker] = key
        child.set(value)

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (format 0.0.4) and its content type."""
        body = generate_latest(self.registry)
        # generate_latest names every counter's HELP/TYPE lines "<name>_total"; Dapr's
        # counters without that suffix must be announced under their own name.
        for name in self._bare_counters:
            raw = name.encode()
            body = body.replace(b"# HELP " + raw + b"_total ", b"# HELP " + raw + b" ", 1)
            body = body.replace(
                b"# TYPE " + raw + b"_total counter\n", b"# TYPE " + raw + b" counter\n", 1
            )
        return body, CONTENT_TYPE_PLAIN_0_0_4
