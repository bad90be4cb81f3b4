"""Tracing settings, sampling, and the spans the sidecar makes (in-memory exporter)."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from proxy.hop.rpc_methods import CALL_LOCAL_STREAM
from proxy.observability.span_export import MAX_EXPORT_BATCH_SIZE, MAX_QUEUE_SIZE, otlp_exporter
from proxy.observability.spans import (
    call_local_span_name,
    callee_span_attributes,
    caller_span_attributes,
)
from proxy.observability.trace_context import (
    format_grpc_trace_bin,
    format_traceparent,
    parse_grpc_trace_bin,
    parse_traceparent,
)
from proxy.observability.tracer import SpanHandle, Tracer
from proxy.observability.tracing_settings import (
    DEFAULT_SAMPLING_RATE,
    OtlpSettings,
    TracingSettings,
    parse_tracing,
    sampling_rate,
)

SRC = "config.yaml"
APP_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def parse(mapping: object, env: dict[str, str] | None = None) -> TracingSettings:
    settings, problems = parse_tracing(mapping, env or {}, SRC)
    assert problems == []
    return settings


def problems_of(mapping: object, env: dict[str, str] | None = None) -> list[str]:
    return parse_tracing(mapping, env or {}, SRC)[1]


# --------------------------------------------------------------------------- settings


def test_no_tracing_section_is_daprs_default() -> None:
    settings = parse(None)
    assert settings == TracingSettings(DEFAULT_SAMPLING_RATE, False, None)
    assert settings.sampling_rate == 0.0001
    assert not settings.enabled  # nothing would export the spans


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("", 0.0001),
        ("  ", 0.0001),
        ("abc", 0.0001),
        ("nan", 0.0001),
        ("0", 0.0),
        ("0.0", 0.0),
        ("0.25", 0.25),
        ("1", 1.0),
        ("5", 1.0),
        ("-1", 0.0),
    ],
)
def test_sampling_rate_text(text: str, rate: float) -> None:
    assert sampling_rate(text) == rate
    assert parse({"samplingRate": text}).sampling_rate == rate


def test_sampling_rate_as_unquoted_number() -> None:
    assert parse({"samplingRate": 1}).sampling_rate == 1.0
    assert parse({"samplingRate": 0.5}).sampling_rate == 0.5
    assert parse({"samplingRate": None}).sampling_rate == DEFAULT_SAMPLING_RATE


def test_sampling_rate_of_the_wrong_type() -> None:
    assert problems_of({"samplingRate": True}) == [
        "config.yaml: spec.tracing.samplingRate: expected a string, got true/false"
    ]


def test_stdout() -> None:
    settings = parse({"samplingRate": "1", "stdout": True})
    assert settings.stdout
    assert settings.enabled
    assert not parse({"stdout": False}).stdout
    assert problems_of({"stdout": "yes"}) == [
        "config.yaml: spec.tracing.stdout: expected true or false, got a string"
    ]


def test_tracing_must_be_a_mapping() -> None:
    assert problems_of(["x"]) == ["config.yaml: spec.tracing: expected a mapping, got a list"]


def test_unknown_keys_with_suggestions() -> None:
    assert problems_of({"samplingrate": "1", "zipkinn": {}, "colour": 1}) == [
        'config.yaml: spec.tracing.samplingrate: unknown field (did you mean "samplingRate"?)',
        'config.yaml: spec.tracing.zipkinn: unknown field (did you mean "zipkin"?)',
        "config.yaml: spec.tracing.colour: unknown field",
    ]
    assert problems_of({"otel": {"endpointAdress": "c:4317"}}) == [
        "config.yaml: spec.tracing.otel.endpointAdress: unknown field"
        ' (did you mean "endpointAddress"?)'
    ]


def test_zipkin_endpoint_is_read() -> None:
    zipkin = {"endpointAddress": "http://localhost:9411/api/v2/spans"}
    settings, found = parse_tracing({"samplingRate": "1", "zipkin": zipkin}, {}, "config.yaml")
    assert found == []
    assert settings.zipkin_endpoint == "http://localhost:9411/api/v2/spans"
    assert settings.enabled
    assert problems_of({"zipkin": {"endpointAddress": "localhost:9411"}}) == [
        "config.yaml: spec.tracing.zipkin.endpointAddress: 'localhost:9411' must be an"
        " http(s):// URL"
    ]


def test_spans_reach_a_real_zipkin_receiver() -> None:
    """A Zipkin v2 JSON collector (an HTTP server on loopback) receives the spans."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict[str, object]] = []

    class Collector(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            received.extend(json.loads(self.rfile.read(length)))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/api/v2/spans"
        tracer = Tracer(TracingSettings(sampling_rate=1.0, zipkin_endpoint=endpoint), "checkout")
        span = tracer.start_client_span("CallLocal/orders/neworder", None, {"rpc.service": "x"})
        span.set_status_code(200)
        span.end()
        assert tracer.shutdown(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert [item["name"] for item in received] == ["CallLocal/orders/neworder"]
    assert received[0]["localEndpoint"] == {"serviceName": "checkout"}


@pytest.mark.parametrize("zipkin", [None, {}, {"endpointAddress": ""}])
def test_zipkin_without_an_address_is_not_configured(zipkin: object) -> None:
    assert problems_of({"zipkin": zipkin}) == []


def test_zipkin_shape_problems() -> None:
    assert problems_of({"zipkin": "http://x"}) == [
        "config.yaml: spec.tracing.zipkin: expected a mapping, got a string"
    ]
    assert problems_of({"zipkin": {"endpoint": "x"}}) == [
        'config.yaml: spec.tracing.zipkin.endpoint: unknown field (did you mean "endpointAddress"?)'
    ]


def test_otel_grpc_defaults() -> None:
    settings = parse({"samplingRate": "1", "otel": {"endpointAddress": "collector:4317"}})
    assert settings.otlp == OtlpSettings("collector:4317", "grpc", True, (), 10.0)
    assert settings.enabled


def test_otel_every_field() -> None:
    otel = {
        "endpointAddress": "collector:4317",
        "protocol": "GRPC",
        "isSecure": False,
        "headers": {"Authorization": "Bearer x", "x-tenant": "a"},
        "timeout": "2500ms",
    }
    settings = parse({"samplingRate": "0.5", "otel": otel})
    assert settings.otlp == OtlpSettings(
        "collector:4317", "grpc", False, (("authorization", "Bearer x"), ("x-tenant", "a")), 2.5
    )


def test_otel_grpc_endpoint_scheme_is_stripped_and_implies_security() -> None:
    plain = parse({"otel": {"endpointAddress": "http://collector:4317/"}}).otlp
    assert plain == OtlpSettings("collector:4317", "grpc", False)
    tls = parse({"otel": {"endpointAddress": "https://collector:4317"}}).otlp
    assert tls == OtlpSettings("collector:4317", "grpc", True)
    said = parse({"otel": {"endpointAddress": "http://collector:4317", "isSecure": True}}).otlp
    assert said is not None
    assert said.is_secure


def test_otel_http_endpoint_becomes_the_traces_url() -> None:
    otel: dict[str, object] = {"endpointAddress": "collector:4318", "protocol": "http"}
    assert parse({"otel": otel}).otlp == OtlpSettings(
        "https://collector:4318/v1/traces", "http", True
    )
    otel["isSecure"] = False
    assert parse({"otel": otel}).otlp == OtlpSettings(
        "http://collector:4318/v1/traces", "http", False
    )
    otel["endpointAddress"] = "https://collector:4318/custom/path"
    assert parse({"otel": otel}).otlp == OtlpSettings(
        "https://collector:4318/custom/path", "http", True
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"k": "v", "K2": "v2"},
        [{"name": "k", "value": "v"}, {"name": "K2", "value": "v2"}],  # Dapr's NameValuePair list
        "k=v, K2=v2",
    ],
)
def test_otel_headers_forms(headers: object) -> None:
    otlp = parse({"otel": {"endpointAddress": "c:4317", "headers": headers}}).otlp
    assert otlp is not None
    assert otlp.headers == (("k", "v"), ("k2", "v2"))


def test_otel_problems_are_all_reported_at_once() -> None:
    otel = {
        "endpointAddress": 4317,
        "protocol": "udp",
        "isSecure": "false",
        "headers": 7,
        "timeout": "5",
    }
    assert problems_of({"samplingRate": False, "stdout": 1, "otel": otel}) == [
        "config.yaml: spec.tracing.samplingRate: expected a string, got true/false",
        "config.yaml: spec.tracing.stdout: expected true or false, got an integer",
        "config.yaml: spec.tracing.otel.endpointAddress: expected a string, got an integer",
        'config.yaml: spec.tracing.otel.protocol: "udp" is not supported (supported: grpc, http)',
        "config.yaml: spec.tracing.otel.isSecure: expected true or false, got a string",
        "config.yaml: spec.tracing.otel.headers: expected a mapping, a list of name/value pairs"
        ' or "key=value,..." text, got an integer',
        'config.yaml: spec.tracing.otel.timeout: "5" has no unit (write e.g. "5s")',
        "config.yaml: spec.tracing.otel.endpointAddress: missing (nothing would be exported)",
    ]


def test_otel_header_entry_problems() -> None:
    headers = [{"name": "a"}, {"name": "", "value": "x"}, "b=c", {"name": "d", "value": 1}]
    assert problems_of({"otel": {"endpointAddress": "c:4317", "headers": headers}}) == [
        "config.yaml: spec.tracing.otel.headers[0].value: expected a string, got empty",
        "config.yaml: spec.tracing.otel.headers[1].name: must not be empty",
        "config.yaml: spec.tracing.otel.headers[2]: expected a mapping, got a string",
        "config.yaml: spec.tracing.otel.headers[3].value: expected a string, got an integer",
    ]
    assert problems_of({"otel": {"endpointAddress": "c:4317", "headers": "a=1,oops"}}) == [
        'config.yaml: spec.tracing.otel.headers: "oops" is not "key=value"'
    ]
    assert problems_of({"otel": {"endpointAddress": "c:4317", "headers": {"a": 1}}}) == [
        "config.yaml: spec.tracing.otel.headers.a: expected a string, got an integer"
    ]


def test_otel_timeout_must_be_positive() -> None:
    assert problems_of({"otel": {"endpointAddress": "c:4317", "timeout": "0s"}}) == [
        "config.yaml: spec.tracing.otel.timeout: must be more than 0"
    ]
    assert problems_of({"otel": {"endpointAddress": "c:4317", "timeout": 5}}) == [
        'config.yaml: spec.tracing.otel.timeout: 5 has no unit (write e.g. "5s")'
    ]


def test_otel_empty_address_alone_means_off() -> None:
    assert parse({"otel": {"endpointAddress": ""}}).otlp is None
    assert parse({"otel": None}).otlp is None


# --------------------------------------------------------------------------- environment


def test_env_endpoint_enables_otlp_and_full_sampling() -> None:
    settings = parse(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert settings.sampling_rate == 1.0
    assert settings.otlp == OtlpSettings("collector:4317", "grpc", False)
    assert settings.enabled


def test_env_endpoint_keeps_an_explicit_rate() -> None:
    settings = parse({"samplingRate": "0.5"}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"})
    assert settings.sampling_rate == 0.5
    assert (
        parse({"samplingRate": "0"}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317"}).sampling_rate == 0
    )
    assert parse({"samplingRate": ""}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317"}).sampling_rate == 1


def test_env_without_endpoint_changes_nothing() -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    assert parse(None, env) == TracingSettings()


def test_env_traces_endpoint_wins_over_the_generic_one() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://generic:4317",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
    }
    otlp = parse(None, env).otlp
    assert otlp == OtlpSettings("traces:4317", "grpc", True)


@pytest.mark.parametrize(
    ("value", "protocol"),
    [("grpc", "grpc"), ("http/protobuf", "http"), ("http/json", "http"), ("HTTP", "http")],
)
def test_env_protocol(value: str, protocol: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": value}
    otlp = parse(None, env).otlp
    assert otlp is not None
    assert otlp.protocol == protocol


def test_env_http_urls() -> None:
    # A generic endpoint is a base URL: the traces path is appended (OTel spec).
    base = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    assert parse(None, base).otlp == OtlpSettings("http://collector:4318/v1/traces", "http", False)
    # A traces endpoint is used as it is.
    exact = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4318/otlp/traces",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    assert parse(None, exact).otlp == OtlpSettings(
        "https://collector:4318/otlp/traces", "http", True
    )


@pytest.mark.parametrize(("value", "secure"), [("true", False), ("FALSE", True), (" true ", False)])
def test_env_insecure(value: str, secure: bool) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": value}
    otlp = parse(None, env).otlp
    assert otlp is not None
    assert otlp.is_secure is secure


def test_env_grpc_default_is_secure_without_a_scheme() -> None:
    otlp = parse(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}).otlp
    assert otlp == OtlpSettings("collector:4317", "grpc", True)


def test_env_headers_and_timeout() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,X-Team=core",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "99999",
    }
    assert parse(None, env).otlp == OtlpSettings(
        "collector:4317", "grpc", True, (("api-key", "a b"), ("x-team", "core")), 2.5
    )


def test_env_problems() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        "OTEL_EXPORTER_OTLP_INSECURE": "maybe",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "novalue",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "10s",
    }
    assert problems_of(None, env) == [
        'environment: OTEL_EXPORTER_OTLP_INSECURE: "maybe" is not true or false',
        'environment: OTEL_EXPORTER_OTLP_TRACES_HEADERS: "novalue" is not "key=value"',
        'environment: OTEL_EXPORTER_OTLP_TIMEOUT: "10s" is not a positive number of milliseconds',
    ]


def test_env_overrides_the_file_as_one_unit() -> None:
    otel = {
        "endpointAddress": "file:4317",
        "isSecure": False,
        "headers": {"token": "for-file-collector"},
        "timeout": "3s",
    }
    settings = parse({"otel": otel}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://env:4317"})
    # No header meant for the file's collector travels to the environment's one.
    assert settings.otlp == OtlpSettings("env:4317", "grpc", True, (), 10.0)
    assert settings.sampling_rate == 1.0


# --------------------------------------------------------------------------- span shapes


def test_span_names_and_attribute_builders() -> None:
    assert call_local_span_name("orders", "new") == "CallLocal/orders/new"
    headers = [
        ("Dapr-App-Id", "orders"),
        ("dapr-caller-app-id", "web"),
        ("dapr-api-token", "secret"),
        ("content-type", "application/json"),
    ]
    assert caller_span_attributes(
        "orders",
        "POST",
        "/v1.0/invoke/orders/method/new",
        url_full="http://127.0.0.1:3500/v1.0/invoke/orders/method/new",
        server_address="127.0.0.1",
        server_port=3500,
        headers=headers,
    ) == {
        "rpc.service": "ServiceInvocation",
        "net.peer.name": "orders",
        "dapr.protocol": "http",
        "dapr.api": "POST /v1.0/invoke/orders/method/new",
        "http.request.method": "POST",
        "url.full": "http://127.0.0.1:3500/v1.0/invoke/orders/method/new",
        "server.address": "127.0.0.1",
        "server.port": 3500,
        "dapr-app-id": "orders",
        "dapr-caller-app-id": "web",
    }
    stream = "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream"
    assert callee_span_attributes("new", api=stream) == {
        "rpc.service": "ServiceInvocation",
        "dapr.invoke_method": "new",
        "dapr.api": "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream",
        "dapr.protocol": "grpc",
    }
    assert callee_span_attributes(
        "new", api="/dapr.proto.internals.v1.ServiceInvocation/CallLocal"
    )["dapr.api"] == ("/dapr.proto.internals.v1.ServiceInvocation/CallLocal")


# --------------------------------------------------------------------------- tracer


def _tracer(rate: float, app_id: str = "web", seed: int = 1) -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer = Tracer(
        TracingSettings(sampling_rate=rate), app_id, exporter=exporter, rng=random.Random(seed)
    )
    return tracer, exporter


@pytest.fixture
def tracers() -> Iterator[list[Tracer]]:
    made: list[Tracer] = []
    yield made
    for tracer in made:
        assert tracer.shutdown(timeout=5.0)


def _finished(tracer: Tracer, exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    """Every span the tracer exported; shutting down flushes what is queued."""
    assert tracer.shutdown(timeout=5.0)
    return exporter.get_finished_spans()


def test_rate_zero_turns_tracing_off(tracers: list[Tracer]) -> None:
    tracer, exporter = _tracer(0.0)
    tracers.append(tracer)
    assert not tracer.enabled
    parent = parse_traceparent(APP_TRACEPARENT)
    handle = tracer.start_client_span("x", parent, {"a": 1})
    assert type(handle) is SpanHandle
    assert handle.context is parent  # passed through untouched
    handle.set_status_code(500)
    handle.end()
    assert tracer.start_server_span("x", None, {}).context is None
    assert _finished(tracer, exporter) == ()


def test_no_exporter_means_off() -> None:
    tracer = Tracer(TracingSettings(sampling_rate=1.0), "web")
    assert not tracer.enabled
    assert tracer.shutdown()


def test_rate_one_samples_every_root(tracers: list[Tracer]) -> None:
    tracer, exporter = _tracer(1.0)
    tracers.append(tracer)
    handles = [tracer.start_server_span("x", None, {}) for _ in range(50)]
    for handle in handles:
        assert handle.context is not None
        assert handle.context.sampled
        handle.end()
    assert len(_finished(tracer, exporter)) == 50


def test_tiny_rate_samples_roots_rarely(tracers: list[Tracer]) -> None:
    tracer, exporter = _tracer(1e-9)
    tracers.append(tracer)
    for _ in range(200):
        handle = tracer.start_server_span("x", None, {})
        assert handle.context is not None
        assert not handle.context.sampled  # still propagated, with the flag clear
        handle.end()
    assert _finished(tracer, exporter) == ()


def test_parent_sampled_flag_wins_over_the_rate(tracers: list[Tracer]) -> None:
    rare, rare_out = _tracer(1e-9)
    always, always_out = _tracer(1.0)
    tracers += [rare, always]
    sampled = parse_traceparent(APP_TRACEPARENT)
    unsampled = parse_traceparent(APP_TRACEPARENT[:-2] + "00")
    assert sampled is not None
    assert unsampled is not None

    child = rare.start_server_span("x", sampled, {})
    assert child.context is not None
    assert child.context.sampled
    child.end()
    skipped = always.start_server_span("x", unsampled, {})
    assert skipped.context is not None
    assert not skipped.context.sampled
    assert skipped.context.trace_id == unsampled.trace_id
    assert skipped.context.span_id != unsampled.span_id
    skipped.end()

    assert [span.name for span in _finished(rare, rare_out)] == ["x"]
    assert _finished(always, always_out) == ()


def test_one_trace_from_caller_to_callee(tracers: list[Tracer]) -> None:
    caller, caller_out = _tracer(0.0001, "web", seed=1)
    callee, callee_out = _tracer(0.0001, "orders", seed=2)
    tracers += [caller, callee]
    from_app = parse_traceparent(APP_TRACEPARENT, "vendor=abc")
    assert from_app is not None

    # Caller sidecar: the app's traceparent is the parent of the CLIENT span.
    client = caller.start_client_span(
        call_local_span_name("orders", "new"),
        from_app,
        caller_span_attributes("orders", "POST", "/v1.0/invoke/orders/method/new"),
    )
    outgoing = client.context
    assert outgoing is not None
    assert outgoing.trace_id == from_app.trace_id
    assert outgoing.span_id != from_app.span_id
    assert outgoing.tracestate == "vendor=abc"

    # Across the gRPC hop as grpc-trace-bin; the callee's SERVER span continues it.
    incoming = parse_grpc_trace_bin(format_grpc_trace_bin(outgoing), outgoing.tracestate)
    server = callee.start_server_span(
        call_local_span_name("orders", "new"),
        incoming,
        callee_span_attributes("new", api=CALL_LOCAL_STREAM),
    )
    to_app = server.context
    assert to_app is not None
    assert format_traceparent(to_app).startswith(f"00-{from_app.trace_id.hex()}-")
    server.set_status_code(0, protocol="grpc")
    server.end()
    client.set_status_code(200)
    client.end()

    (client_span,) = _finished(caller, caller_out)
    (server_span,) = _finished(callee, callee_out)
    assert client_span.name == "CallLocal/orders/new"
    assert client_span.kind is SpanKind.CLIENT
    assert client_span.resource.attributes["service.name"] == "web"
    assert client_span.parent is not None
    assert client_span.parent.span_id == int.from_bytes(from_app.span_id, "big")
    assert client_span.context is not None
    assert client_span.context.trace_id == int.from_bytes(from_app.trace_id, "big")
    assert client_span.context.span_id == int.from_bytes(outgoing.span_id, "big")
    assert dict(client_span.attributes or {}) == {
        "rpc.service": "ServiceInvocation",
        "net.peer.name": "orders",
        "dapr.protocol": "http",
        "dapr.api": "POST /v1.0/invoke/orders/method/new",
        "http.request.method": "POST",
        "dapr.status_code": 200,
    }
    assert client_span.status.status_code is StatusCode.UNSET

    assert server_span.name == "CallLocal/orders/new"
    assert server_span.kind is SpanKind.SERVER
    assert server_span.resource.attributes["service.name"] == "orders"
    assert server_span.parent is not None
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.context is not None
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.context.span_id == int.from_bytes(to_app.span_id, "big")
    assert dict(server_span.attributes or {}) == {
        "rpc.service": "ServiceInvocation",
        "dapr.invoke_method": "new",
        "dapr.api": CALL_LOCAL_STREAM,
        "dapr.protocol": "grpc",
        "rpc.grpc.status_code": 0,
    }


def test_root_span_without_parent_starts_a_trace(tracers: list[Tracer]) -> None:
    tracer, exporter = _tracer(1.0)
    tracers.append(tracer)
    handle = tracer.start_client_span("CallLocal/orders/new", None, {"extra": "yes"})
    handle.end()
    (span,) = _finished(tracer, exporter)
    assert span.parent is None
    assert handle.context is not None
    assert span.context is not None
    assert span.context.trace_id == int.from_bytes(handle.context.trace_id, "big")
    assert (span.attributes or {})["extra"] == "yes"


def test_ids_follow_the_injected_rng(tracers: list[Tracer]) -> None:
    first, _ = _tracer(1.0, seed=5)
    second, _ = _tracer(1.0, seed=5)
    tracers += [first, second]
    one = first.start_server_span("x", None, {})
    two = second.start_server_span("x", None, {})
    assert one.context == two.context
    one.end()
    two.end()


class _ZeroFirst(random.Random):
    """Returns 0 twice, as a real generator eventually may."""

    def __init__(self) -> None:
        super().__init__(1)
        self.zeros = 2

    def getrandbits(self, k: int) -> int:
        if self.zeros:
            self.zeros -= 1
            return 0
        return super().getrandbits(k)


def test_ids_are_never_zero(tracers: list[Tracer]) -> None:
    tracer = Tracer(
        TracingSettings(sampling_rate=1.0), "web", exporter=InMemorySpanExporter(), rng=_ZeroFirst()
    )
    tracers.append(tracer)
    handle = tracer.start_server_span("x", None, {})
    handle.end()
    # TraceContext refuses all-zero ids, so getting one at all says they are not zero.
    assert handle.context is not None


@pytest.mark.parametrize(
    ("client", "code", "protocol", "error"),
    [
        (True, 200, "http", False),
        (True, 404, "http", True),
        (False, 404, "http", False),
        (False, 503, "http", True),
        (True, 5, "grpc", True),  # NOT_FOUND fails the caller
        (False, 5, "grpc", False),  # ... but is not the server's fault
        (False, 14, "grpc", True),  # UNAVAILABLE
        (False, 0, "grpc", False),
    ],
)
def test_status_codes(
    tracers: list[Tracer], client: bool, code: int, protocol: str, error: bool
) -> None:
    tracer, exporter = _tracer(1.0)
    tracers.append(tracer)
    start = tracer.start_client_span if client else tracer.start_server_span
    handle = start("x", None, {})
    handle.set_status_code(code, protocol="grpc" if protocol == "grpc" else "http")
    handle.end()
    (span,) = _finished(tracer, exporter)
    key = "rpc.grpc.status_code" if protocol == "grpc" else "dapr.status_code"
    assert (span.attributes or {})[key] == code
    assert (span.status.status_code is StatusCode.ERROR) is error


def test_shutdown_flushes_and_later_spans_are_no_ops() -> None:
    tracer, exporter = _tracer(1.0)
    tracer.start_server_span("before", None, {}).end()
    assert tracer.shutdown(timeout=5.0)
    assert [span.name for span in exporter.get_finished_spans()] == ["before"]
    assert not tracer.enabled
    assert type(tracer.start_server_span("after", None, {})) is SpanHandle
    assert tracer.shutdown()  # idempotent


class _Watched(SpanExporter):
    """A real exporter, and what it was handed: spans, and how each export ended."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.started = threading.Event()
        self.handed = 0
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.handed += len(spans)
        self.started.set()
        result = self._inner.export(spans)
        with self._lock:
            self.results.append(result)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()


@contextmanager
def _silent_collector() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def _call(tracer: Tracer) -> None:
    """What the request path does with a span for one call."""
    handle = tracer.start_client_span("CallLocal/orders/new", None, {})
    assert handle.context is not None
    assert handle.context.sampled
    handle.set_status_code(200)
    handle.end()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_dead_collector_costs_spans_not_calls(protocol: str) -> None:
    with _silent_collector() as port:
        endpoint = f"127.0.0.1:{port}"
        if protocol == "http":
            endpoint = f"http://{endpoint}/v1/traces"
        # An export timeout far beyond the test's own: the export never ends by itself.
        otlp = OtlpSettings(endpoint, "grpc" if protocol == "grpc" else "http", False, (), 120.0)
        exporter = _Watched(otlp_exporter(otlp))
        tracer = Tracer(TracingSettings(sampling_rate=1.0, otlp=otlp), "web", exporter=exporter)
        for _ in range(MAX_EXPORT_BATCH_SIZE):
            _call(tracer)
        assert exporter.started.wait(10), "the first batch never went to the collector"

        # The exporter now waits on a collector that never answers. Calls go on,
        # more of them than the queue holds.
        calls = MAX_EXPORT_BATCH_SIZE + MAX_QUEUE_SIZE + 500
        for _ in range(calls - MAX_EXPORT_BATCH_SIZE):
            _call(tracer)
        assert exporter.results == []  # every call completed while the export hung

        tracer.shutdown(timeout=2.0)  # abandons the hung export
        # Spans paid: at most the first batch ever reached the collector, and it
        # never acknowledged one.
        assert exporter.handed <= MAX_EXPORT_BATCH_SIZE < calls
        assert SpanExportResult.SUCCESS not in exporter.results
