"""Dapr's metric families: names, help texts, labels, buckets, and which labels overflow.

Names, types and labels follow ``pkg/diagnostics`` in Dapr (see
``reference/dapr-compat.md``). Each family's ``overflow`` positions are the labels the
series cap replaces with ``_overflow`` (see ``series_cap``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge, Histogram

from proxy.observability.dapr_exposition import DaprCollector, Export, Kind
from proxy.observability.series_cap import CappedFamily, M

# Dapr's ``defaultSizeDistribution`` for byte sizes: 1 KiB, 2 KiB, 4 KiB, 16 KiB, 64 KiB,
# 256 KiB, 1 MiB, 4 MiB, 16 MiB, 64 MiB, 256 MiB, 1 GiB, 4 GiB.
DAPR_BYTE_BUCKETS: tuple[float, ...] = (
    1024, 2048, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
    268435456, 1073741824, 4294967296,
)  # fmt: skip


class DaprFamilies:
    """Every family tether exports, each re-exported through ``collector``.

    ``response_count`` is Dapr's ``increasedCardinality``: only then does
    ``dapr_http_server_response_count`` exist. Families whose only label is
    ``app_id`` are bound to ``app_id`` at once.
    """

    def __init__(
        self,
        app_id: str,
        collector: DaprCollector,
        *,
        latency_buckets: Sequence[float],
        max_series: int,
        response_count: bool,
    ) -> None:
        self._collector = collector
        self._max_series = max_series
        lat = latency_buckets

        svc = "dapr_runtime_service_invocation_"
        self.req_sent = self._counter(
            svc + "req_sent_total",
            "Number of requests sent for service invocation.",
            ("app_id", "dst_app_id", "type"),
            overflow=(1,),
        )
        self.req_recv = self._counter(
            svc + "req_recv_total",
            "Number of requests received for service invocation.",
            ("app_id", "src_app_id"),
            overflow=(1,),
        )
        self.res_sent = self._counter(
            svc + "res_sent_total",
            "Number of responses sent for service invocation.",
            ("app_id", "dst_app_id", "status"),
            overflow=(1,),
        )
        self.res_recv = self._counter(
            svc + "res_recv_total",
            "Number of responses received for service invocation.",
            ("app_id", "src_app_id", "status", "type"),
            overflow=(1,),
        )
        self.res_recv_latency = self._histogram(
            svc + "res_recv_latency_ms",
            "Response latency in milliseconds for service invocation.",
            ("app_id", "src_app_id", "status"),
            lat,
            overflow=(1,),
        )

        http_labels = ("app_id", "method", "path", "status")
        self.srv_requests = self._counter(
            "dapr_http_server_request_count",
            "Number of HTTP requests started in server.",
            http_labels,
            overflow=(1, 2),
        )
        self.srv_latency = self._histogram(
            "dapr_http_server_latency",
            "HTTP request end-to-end latency in server, in milliseconds.",
            http_labels,
            lat,
            overflow=(1, 2),
        )
        self.srv_responses = (
            self._counter(
                "dapr_http_server_response_count",
                "The number of HTTP responses.",
                http_labels,
                overflow=(1, 2),
            )
            if response_count
            else None
        )
        self.srv_request_bytes = self._histogram(
            "dapr_http_server_request_bytes",
            "HTTP request body size in server, in bytes.",
            ("app_id",),
            DAPR_BYTE_BUCKETS,
        ).child((app_id,))
        self.srv_response_bytes = self._histogram(
            "dapr_http_server_response_bytes",
            "HTTP response body size in server, in bytes.",
            ("app_id",),
            DAPR_BYTE_BUCKETS,
        ).child((app_id,))

        self.cli_completed = self._counter(
            "dapr_http_client_completed_count",
            "Count of completed requests to the app.",
            http_labels,
            overflow=(1, 2),
        )
        self.cli_latency = self._histogram(
            "dapr_http_client_roundtrip_latency",
            "Time from the first byte of the request to the last byte of the response, in ms.",
            http_labels,
            lat,
            overflow=(1, 2),
        )
        self.cli_sent_bytes = self._histogram(
            "dapr_http_client_sent_bytes",
            "Total bytes sent in request bodies to the app.",
            http_labels,
            DAPR_BYTE_BUCKETS,
            overflow=(1, 2),
        )
        self.cli_received_bytes = self._histogram(
            "dapr_http_client_received_bytes",
            "Total bytes received in response bodies from the app.",
            ("app_id",),
            DAPR_BYTE_BUCKETS,
        ).child((app_id,))

        gs = ("app_id", "grpc_server_method", "grpc_server_status")
        self.gs_completed = self._counter(
            "dapr_grpc_io_server_completed_rpcs",
            "Count of RPCs by method and status.",
            gs,
            overflow=(1,),
        )
        self.gs_latency = self._histogram(
            "dapr_grpc_io_server_server_latency",
            "Time from receiving a request to sending the last response, in milliseconds.",
            gs,
            lat,
            overflow=(1,),
        )
        self.gs_received = self._histogram(
            "dapr_grpc_io_server_received_bytes_per_rpc",
            "Total bytes received per RPC.",
            gs[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )
        self.gs_sent = self._histogram(
            "dapr_grpc_io_server_sent_bytes_per_rpc",
            "Total bytes sent per RPC.",
            gs[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )
        gc = ("app_id", "grpc_client_method", "grpc_client_status")
        self.gc_completed = self._counter(
            "dapr_grpc_io_client_completed_rpcs",
            "Count of RPCs by method and status.",
            gc,
            overflow=(1,),
        )
        self.gc_latency = self._histogram(
            "dapr_grpc_io_client_roundtrip_latency",
            "Time from the first byte sent to the last byte received, in milliseconds.",
            gc,
            lat,
            overflow=(1,),
        )
        self.gc_sent = self._histogram(
            "dapr_grpc_io_client_sent_bytes_per_rpc",
            "Total bytes sent per RPC.",
            gc[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )
        self.gc_received = self._histogram(
            "dapr_grpc_io_client_received_bytes_per_rpc",
            "Total bytes received per RPC.",
            gc[:2],
            DAPR_BYTE_BUCKETS,
            overflow=(1,),
        )

        # Access control on the callee: app_id, trustDomain and namespace are the caller's
        # (from its SPIFFE ID; empty without one), as daprd labels them.
        acl_labels = ("app_id", "trustDomain", "namespace")
        acl = "dapr_runtime_acl_"
        self.acl: dict[tuple[str, bool], CappedFamily[Counter]] = {
            (by, allowed): self._counter(
                f"{acl}{by}_policy_action_{'allowed' if allowed else 'blocked'}_total",
                f"Requests {'allowed' if allowed else 'blocked'} by the "
                f"{'app' if by == 'app' else 'global'} action of the access control policy.",
                acl_labels,
                overflow=(0, 2),
            )
            for by in ("app", "global")
            for allowed in (True, False)
        }

        policy_labels = (
            "app_id",
            "name",
            "policy",
            "namespace",
            "flow_direction",
            "target",
            "status",
        )
        self.res_loaded = self._counter(
            "dapr_resiliency_loaded",
            "Number of resiliency policies loaded.",
            ("app_id", "name", "namespace"),
            overflow=(1, 2),
        )
        self.res_count = self._counter(
            "dapr_resiliency_count",
            "Number of times a resiliency policy has been applied.",
            policy_labels,
            overflow=(1, 3, 5),
        )
        self.res_activations = self._counter(
            "dapr_resiliency_activations_total",
            "Number of times a resiliency policy has been activated after a failure "
            "or a state change.",
            policy_labels,
            overflow=(1, 3, 5),
        )
        cb_doc = "A circuit breaker's current state: 0 closed, 1 half-open, 2 open, -1 unknown."
        self.cb_state = self._define(
            "dapr_resiliency_cb_state",
            cb_doc,
            Gauge("dapr_resiliency_cb_state", cb_doc, policy_labels, registry=None),
            "gauge",
            (1, 3, 5),
        )

    def _define(
        self, name: str, doc: str, metric: M, kind: Kind, overflow: Iterable[int]
    ) -> CappedFamily[M]:
        self._collector.add(Export(name, doc, kind, metric))
        return CappedFamily(name, metric, overflow, self._max_series)

    def _counter(
        self, name: str, doc: str, labels: Sequence[str], overflow: Iterable[int] = ()
    ) -> CappedFamily[Counter]:
        metric = Counter(name, doc, labels, registry=None)
        return self._define(name, doc, metric, "counter", overflow)

    def _histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        overflow: Iterable[int] = (),
    ) -> CappedFamily[Histogram]:
        metric = Histogram(name, doc, labels, registry=None, buckets=buckets)
        return self._define(name, doc, metric, "histogram", overflow)
