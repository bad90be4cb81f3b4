"""A real OTLP gRPC trace receiver, built by the test from the official
OpenTelemetry protocol definitions, collects what two sidecars export: one
trace per call, the caller span a child of the app's own ``traceparent``, the
callee span a child of the caller span, the app handed the callee span's
context, and the calling app handed a ``traceparent`` back. A collector that
accepts connections and never answers costs spans, never calls."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import App, Cluster, Sidecar, request

SPAN_NAME = "CallLocal/orders/neworder"
CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    span: trace_pb2.Span


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span of every Export call, with its resource's service.name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.exports = 0

    def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            service = ""
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    service = attribute.value.string_value
            for scope_spans in resource_spans.scope_spans:
                received += [ReceivedSpan(service, span) for span in scope_spans.spans]
        with self._lock:
            self._spans += received
            self.exports += 1
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)


@contextmanager
def otlp_receiver() -> Iterator[tuple[Receiver, int]]:
    """An OTLP/gRPC trace service on loopback; stopped when the block ends."""
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(grace=None).wait(5)


def clean_env(cluster: Cluster) -> None:
    """No OTEL_* variable from the outer environment may redirect the sidecars' spans."""
    for name in [n for n in cluster.env if n.startswith("OTEL_")]:
        del cluster.env[name]


def tracing_config(path: Path, endpoint: str) -> Path:
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\n"
        "kind: Configuration\n"
        "metadata: {name: tracing}\n"
        "spec:\n"
        "  tracing:\n"
        '    samplingRate: "1"\n'
        f'    otel: {{endpointAddress: "{endpoint}", protocol: grpc, isSecure: false}}\n'
    )
    return path


def pair(
    cluster: Cluster, *, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[App, Sidecar, Sidecar]:
    cluster.certs_init()
    app = cluster.app("orders")
    orders = cluster.sidecar("orders", app, extra=extra, env=env)
    checkout = cluster.sidecar("checkout", extra=extra, env=env)
    return app, orders, checkout


def wait_for_spans(receiver: Receiver, trace_id: bytes, attempts: int = 100) -> list[ReceivedSpan]:
    """Poll (bounded, ~20 s) until both sidecars' invocation spans of the trace arrived."""
    found: list[ReceivedSpan] = []
    for _ in range(attempts):
        found = [s for s in receiver.spans() if s.span.trace_id == trace_id]
        services = {s.service for s in found if s.span.name == SPAN_NAME}
        if {"checkout", "orders"} <= services:
            return found
        time.sleep(0.2)
    raise AssertionError(f"spans of both sidecars never arrived; got {found}")


def only(spans: list[ReceivedSpan], service: str, kind: int) -> trace_pb2.Span:
    matching = [
        s.span
        for s in spans
        if s.service == service and s.span.kind == kind and s.span.name == SPAN_NAME
    ]
    assert len(matching) == 1, matching
    return matching[0]


def parse_traceparent(value: str) -> tuple[str, str, str, str]:
    version, trace_id, parent_id, flags = value.split("-")
    return version, trace_id, parent_id, flags


def check_one_trace(app: App, checkout: Sidecar, receiver: Receiver) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    sent = f"00-{trace_id}-{parent_id}-01"
    response = request(
        checkout.http_port,
        "POST",
        "/v1.0/invoke/orders/method/neworder",
        body=b'{"id": 1}',
        headers={"traceparent": sent, "content-type": "application/json"},
    )
    assert response.status == 200, response.body

    # The calling app gets a traceparent back, in its own trace.
    returned = parse_traceparent(response.headers["traceparent"])
    assert returned[1] == trace_id

    spans = wait_for_spans(receiver, bytes.fromhex(trace_id))
    assert all(s.span.trace_id.hex() == trace_id for s in spans)
    caller = only(spans, "checkout", CLIENT)
    callee = only(spans, "orders", SERVER)
    assert caller.parent_span_id.hex() == parent_id
    assert callee.parent_span_id == caller.span_id
    assert caller.span_id != callee.span_id
    assert caller.span_id.hex() != parent_id

    # The app sees the callee span's context, not the caller's nor its own header.
    calls = [r for r in app.received() if r["path"] == "/neworder"]
    assert len(calls) == 1, calls
    headers = dict((k, v) for k, v in calls[0]["headers"])  # type: ignore[union-attr]
    version, seen_trace, seen_parent, flags = parse_traceparent(str(headers["traceparent"]))
    assert (version, seen_trace, flags) == ("00", trace_id, "01")
    assert seen_parent == callee.span_id.hex()


def test_configuration_file_exports_one_trace_across_both_sidecars(cluster: Cluster) -> None:
    clean_env(cluster)
    with otlp_receiver() as (receiver, port):
        config = tracing_config(cluster.root / "tracing.yaml", f"127.0.0.1:{port}")
        app, _, checkout = pair(cluster, extra=("--config", str(config)))
        check_one_trace(app, checkout, receiver)


def test_otel_environment_variables_export_one_trace(cluster: Cluster) -> None:
    clean_env(cluster)
    with otlp_receiver() as (receiver, port):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
        app, _, checkout = pair(cluster, env=env)
        check_one_trace(app, checkout, receiver)


@contextmanager
def silent_collector() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def check_calls_go_through(cluster: Cluster, orders: Sidecar, checkout: Sidecar) -> None:
    for number in range(50):
        response = request(
            checkout.http_port,
            "POST",
            f"/v1.0/invoke/orders/method/neworder?n={number}",
            body=b"{}",
            headers={"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"},
        )
        assert response.status == 200, (number, response.body)
    for sidecar in (checkout, orders):
        assert sidecar.process.poll() is None, sidecar.log()
        assert request(sidecar.http_port, "GET", "/v1.0/healthz").status == 204
    for sidecar in (checkout, orders):
        assert cluster.stop(sidecar.process) == 0, sidecar.log()


def test_silent_collector_costs_no_calls(cluster: Cluster) -> None:
    clean_env(cluster)
    with silent_collector() as port:
        config = tracing_config(cluster.root / "tracing.yaml", f"127.0.0.1:{port}")
        _, orders, checkout = pair(cluster, extra=("--config", str(config)))
        check_calls_go_through(cluster, orders, checkout)
