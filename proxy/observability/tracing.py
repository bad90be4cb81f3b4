"""OpenTelemetry tracing for the sidecar: settings, one ``Tracer``, Dapr's span shapes.

The proxy code talks to this module in plain values (``TraceContext`` from
``proxy.observability.trace_context``, attribute dicts, status codes) and never touches an
OpenTelemetry type, so the request path reads the same whether tracing is on or off.

Settings come from a Dapr ``Configuration``'s ``spec.tracing`` and the standard
``OTEL_EXPORTER_OTLP_*`` environment variables. Precedence follows the project
rule (environment over YAML), applied to the OTLP exporter as a unit: when the
environment names an endpoint, the protocol, security, headers and timeout come
from the environment too, so credentials meant for one collector never travel
to another. (Dapr does the reverse and lets an ``otel.endpointAddress`` in the
file win.)

Exporting never blocks a call: ended spans are appended to a bounded in-memory
queue and a background thread exports them in batches. A dead or slow collector
stalls only that thread; once the queue is full, new spans are dropped.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from proxy.observability.trace_context import TraceContext
from yamlcheck import DurationError, Problems, parse_go_duration, type_name

# Dapr's rate when ``samplingRate`` is empty or not a number.
DEFAULT_SAMPLING_RATE = 0.0001
# The OTLP exporters' default export timeout, as in the OpenTelemetry spec.
DEFAULT_OTLP_TIMEOUT_SECONDS = 10.0
# The OTLP/HTTP path for traces, appended to a base URL.
OTLP_HTTP_TRACES_PATH = "/v1/traces"

SERVICE_INVOCATION = "ServiceInvocation"
CALL_LOCAL_STREAM_API = "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream"
CALL_LOCAL_API = "/dapr.proto.internals.v1.ServiceInvocation/CallLocal"
INVOKE_SERVICE_API = "/dapr.proto.runtime.v1.Dapr/InvokeService"

# Batching. A span is appended to a deque on the calling thread (no I/O, no lock
# wait); everything else happens on the processor's worker thread.
# - MAX_QUEUE_SIZE bounds memory (a few MB of span records) and is how a dead
#   collector shows: once the queue is full, new spans are dropped.
# - SCHEDULE_DELAY_MS / MAX_EXPORT_BATCH_SIZE: small batches, often. Serialising
#   a batch holds the GIL; 512-span batches once a second showed as 25 ms p99
#   stalls of the event loop at 1000 req/s, 64-span batches every 200 ms as ~7 ms
#   (bench/invoke_bench.py with tracing at 0.1).
# - The export timeout: SDK 1.45 accepts ``export_timeout_millis`` but does not
#   use it; what bounds one export is the OTLP exporter's own ``timeout``
#   (including its retries), set from the settings. It is passed anyway so a
#   later SDK that honours it gets the same bound.
MAX_QUEUE_SIZE = 2048
MAX_EXPORT_BATCH_SIZE = 64
SCHEDULE_DELAY_MS = 200
# Extra wait after abandoning an export at shutdown, for the worker to notice.
_ABANDON_GRACE_SECONDS = 1.0

# Headers that carry credentials never become span attributes.
_SECRET_HEADERS = frozenset({"dapr-api-token", "dapr-app-token"})
# gRPC codes that make a SERVER span an error (OpenTelemetry semantic conventions):
# UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
_GRPC_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})

Protocol = Literal["grpc", "http"]
AttributeValue = str | int


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to export spans over OTLP."""

    # grpc: "host:port"; http: the full URL of the traces endpoint.
    endpoint: str
    protocol: Protocol = "grpc"
    is_secure: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_OTLP_TIMEOUT_SECONDS  # seconds, per export including retries


@dataclass(frozen=True)
class TracingSettings:
    """Validated tracing configuration; the default is Dapr's (rate 0.0001, no exporter)."""

    sampling_rate: float = DEFAULT_SAMPLING_RATE
    stdout: bool = False
    otlp: OtlpSettings | None = None
    zipkin_endpoint: str | None = None  # Zipkin v2 JSON spans URL

    @property
    def enabled(self) -> bool:
        """Spans are worth making: some are sampled and something exports them."""
        exporting = self.stdout or self.otlp is not None or self.zipkin_endpoint is not None
        return self.sampling_rate > 0 and exporting


_TRACING_KEYS = ("samplingRate", "stdout", "zipkin", "otel")
_ZIPKIN_KEYS = ("endpointAddress",)
_OTEL_KEYS = ("endpointAddress", "protocol", "isSecure", "headers", "timeout")
_ENV_PREFIX = "OTEL_EXPORTER_OTLP_"


def sampling_rate(text: str) -> float:
    """Dapr's reading of ``samplingRate``: a float in [0, 1]; empty or not a number → 0.0001."""
    try:
        rate = float(text)
    except ValueError:
        return DEFAULT_SAMPLING_RATE
    if math.isnan(rate):
        return DEFAULT_SAMPLING_RATE
    # Dapr's ratio sampler treats >= 1 as always and <= 0 as never.
    return min(max(rate, 0.0), 1.0)


def _env(env: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """The traces-specific variable if set, else the generic one: (name, value)."""
    for name in (f"{_ENV_PREFIX}TRACES_{suffix}", f"{_ENV_PREFIX}{suffix}"):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _header_text(text: str, report: Callable[[str], None]) -> list[tuple[str, str]]:
    """Headers from "k=v,k2=v2" (the OTEL_EXPORTER_OTLP_HEADERS format; values percent-decoded)."""
    headers: list[tuple[str, str]] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            report(f'{json.dumps(entry)} is not "key=value"')
            continue
        headers.append((unquote(key.strip()).lower(), unquote(value.strip())))
    return headers


def _yaml_headers(problems: Problems, field: str, value: object) -> list[tuple[str, str]]:
    """``otel.headers``: a mapping, Dapr's list of {name, value}, or "k=v,k=v" text."""
    if value is None:
        return []
    if isinstance(value, str):
        return _header_text(value, lambda what: problems.add(field, what))
    if isinstance(value, dict):
        headers: list[tuple[str, str]] = []
        for key, item in value.items():
            text = problems.string(f"{field}.{key}", item)
            if text is not None:
                headers.append((str(key).lower(), text))
        return headers
    if isinstance(value, list):
        headers = []
        for index, entry in enumerate(value):
            sub = f"{field}[{index}]"
            pair = problems.mapping(sub, entry)
            if pair is None:
                continue
            for key in pair:
                if key not in ("name", "value"):
                    problems.unknown(sub, key, ("name", "value"))
            name = problems.string(f"{sub}.name", pair.get("name"))
            text = problems.string(f"{sub}.value", pair.get("value"))
            if name is not None and not name.strip():
                problems.add(f"{sub}.name", "must not be empty")
            elif name is not None and text is not None:
                headers.append((name.strip().lower(), text))
        return headers
    problems.add(
        field,
        f'expected a mapping, a list of name/value pairs or "key=value,..." text, '
        f"got {type_name(value)}",
    )
    return []


def _grpc_target(endpoint: str) -> tuple[str, bool | None]:
    """("host:port", security implied by a scheme or None) for a gRPC endpoint."""
    if "://" not in endpoint:
        return endpoint.rstrip("/"), None
    parts = urlsplit(endpoint)
    implied = {"http": False, "https": True}.get(parts.scheme.lower())
    return parts.netloc, implied


def _http_url(endpoint: str, is_secure: bool, *, append_path: bool) -> str:
    """The full OTLP/HTTP traces URL; a scheme-less "host:port" (Dapr's form) gets one."""
    url = endpoint if "://" in endpoint else f"{'https' if is_secure else 'http'}://{endpoint}"
    path = urlsplit(url).path
    if append_path or path in ("", "/"):
        url = url.rstrip("/") + OTLP_HTTP_TRACES_PATH
    return url


@dataclass
class _OtlpDraft:
    endpoint: str = ""
    protocol: Protocol = "grpc"
    is_secure: bool | None = None  # None: not said, so scheme or default decides
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_OTLP_TIMEOUT_SECONDS
    base_url: bool = False  # an OTEL_EXPORTER_OTLP_ENDPOINT base URL: append /v1/traces

    def finish(self) -> OtlpSettings:
        if self.protocol == "grpc":
            target, implied = _grpc_target(self.endpoint)
            secure = self.is_secure if self.is_secure is not None else implied
            return OtlpSettings(
                target, "grpc", True if secure is None else secure, self.headers, self.timeout
            )
        secure = True if self.is_secure is None else self.is_secure
        url = _http_url(self.endpoint, secure, append_path=self.base_url)
        secure = urlsplit(url).scheme.lower() == "https"
        return OtlpSettings(url, "http", secure, self.headers, self.timeout)


def _yaml_otel(problems: Problems, value: object) -> _OtlpDraft | None:
    field = "spec.tracing.otel"
    if value is None:
        return None
    section = problems.mapping(field, value)
    if section is None:
        return None
    draft = _OtlpDraft()
    for key, item in section.items():
        sub = f"{field}.{key}"
        if key == "endpointAddress":
            draft.endpoint = (problems.string(sub, item) or "").strip()
        elif key == "protocol":
            text = problems.string(sub, item)
            if text is None or not text.strip():
                continue
            protocol = text.strip().lower()
            if protocol == "grpc":
                draft.protocol = "grpc"
            elif protocol == "http":
                draft.protocol = "http"
            else:
                problems.add(sub, f"{json.dumps(text)} is not supported (supported: grpc, http)")
        elif key == "isSecure":
            draft.is_secure = problems.boolean(sub, item)
        elif key == "headers":
            draft.headers = tuple(_yaml_headers(problems, sub, item))
        elif key == "timeout":
            text = problems.string(sub, item)
            if text is None:
                continue
            try:
                seconds = parse_go_duration(text.strip())
            except DurationError as exc:
                problems.add(sub, str(exc))
                continue
            if seconds <= 0:
                problems.add(sub, "must be more than 0")
            else:
                draft.timeout = seconds
        else:
            problems.unknown(field, key, _OTEL_KEYS)
    return draft


def _env_otel(problems: Problems, env: Mapping[str, str]) -> _OtlpDraft | None:
    found = _env(env, "ENDPOINT")
    if found is None:
        return None
    name, endpoint = found
    draft = _OtlpDraft(endpoint=endpoint, base_url=name == f"{_ENV_PREFIX}ENDPOINT")
    protocol = _env(env, "PROTOCOL")
    if protocol is not None and protocol[1].lower().startswith("http"):
        draft.protocol = "http"
    insecure = _env(env, "INSECURE")
    if insecure is not None:
        var, text = insecure
        if text.lower() in ("true", "false"):
            draft.is_secure = text.lower() == "false"
        else:
            problems.env(var, f"{json.dumps(text)} is not true or false")
    headers = _env(env, "HEADERS")
    if headers is not None:
        var, text = headers
        draft.headers = tuple(_header_text(text, lambda what: problems.env(var, what)))
    timeout = _env(env, "TIMEOUT")
    if timeout is not None:
        var, text = timeout
        # The OpenTelemetry spec (and Dapr) read this as milliseconds.
        if text.isdigit() and int(text) > 0:
            draft.timeout = int(text) / 1000.0
        else:
            problems.env(var, f"{json.dumps(text)} is not a positive number of milliseconds")
    return draft


def parse_tracing(
    mapping: object, env: Mapping[str, str], source: str
) -> tuple[TracingSettings, list[str]]:
    """Read ``spec.tracing`` (None when absent) and the OTLP environment variables.

    Returns the settings and every problem found, each as
    ``<source>: spec.tracing.<field>: <what is wrong>`` (or ``environment: <VAR>: ...``).
    The settings are meaningful only when there are no problems.
    """
    problems = Problems(source)
    section: dict[str, object] = {}
    if mapping is not None:
        section = problems.mapping("spec.tracing", mapping) or {}

    rate_text = ""
    stdout = False
    zipkin: str | None = None
    yaml_otel: _OtlpDraft | None = None
    for key, item in section.items():
        field = f"spec.tracing.{key}"
        if key == "samplingRate":
            if isinstance(item, int | float) and not isinstance(item, bool):
                rate_text = str(item)  # YAML read an unquoted number; Dapr wants a string
            elif item is not None:
                rate_text = problems.string(field, item) or ""
        elif key == "stdout":
            stdout = bool(problems.boolean(field, item)) if item is not None else False
        elif key == "zipkin":
            zipkin = _zipkin(problems, item)
        elif key == "otel":
            yaml_otel = _yaml_otel(problems, item)
        else:
            problems.unknown("spec.tracing", key, _TRACING_KEYS)

    env_otel = _env_otel(problems, env)
    if env_otel is not None and not rate_text.strip():
        rate_text = "1"  # as Dapr: an OTLP endpoint in the environment means "trace everything"
    draft = env_otel or yaml_otel
    otlp = draft.finish() if draft is not None and draft.endpoint else None
    otel_keys = section.get("otel")
    if (
        yaml_otel is not None
        and not yaml_otel.endpoint
        and env_otel is None
        and isinstance(otel_keys, dict)
        and set(otel_keys) & set(_OTEL_KEYS) - {"endpointAddress"}
    ):
        # Options without an address export nothing; an explicitly empty address alone is "off".
        problems.add("spec.tracing.otel.endpointAddress", "missing (nothing would be exported)")
    rate = sampling_rate(rate_text.strip()) if rate_text.strip() else DEFAULT_SAMPLING_RATE
    return TracingSettings(rate, stdout, otlp, zipkin), problems.items


def _zipkin(problems: Problems, value: object) -> str | None:
    """The Zipkin collector URL (``http://host:9411/api/v2/spans``), if one is set."""
    field = "spec.tracing.zipkin"
    if value is None:
        return None
    section = problems.mapping(field, value)
    if section is None:
        return None
    for key in section:
        if key not in _ZIPKIN_KEYS:
            problems.unknown(field, key, _ZIPKIN_KEYS)
    address = section.get("endpointAddress")
    if address is None:
        return None
    text = problems.string(f"{field}.endpointAddress", address)
    if text is None or not text.strip():
        return None
    text = text.strip()
    if not text.startswith(("http://", "https://")):
        problems.add(f"{field}.endpointAddress", f"{text!r} must be an http(s):// URL")
        return None
    return text


# --------------------------------------------------------------------------- span shapes


def call_local_span_name(app_id: str, method: str) -> str:
    """Dapr's span name for an invocation: ``CallLocal/<app-id>/<method>``."""
    return f"CallLocal/{app_id}/{method}"


def caller_span_attributes(
    target_app_id: str,
    verb: str,
    path: str,
    *,
    url_full: str = "",
    server_address: str = "",
    server_port: int | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> dict[str, AttributeValue]:
    """Attributes of the caller's CLIENT span for an HTTP API invocation.

    ``path`` is the request path as the app sent it; ``headers`` are the request
    headers, of which every ``dapr-*`` one except the API and app tokens is kept.
    """
    attributes: dict[str, AttributeValue] = {
        "rpc.service": SERVICE_INVOCATION,
        "net.peer.name": target_app_id,
        "dapr.protocol": "http",
        "dapr.api": f"{verb} {path}",
        "http.request.method": verb,
    }
    if url_full:
        attributes["url.full"] = url_full
    if server_address:
        attributes["server.address"] = server_address
    if server_port is not None:
        attributes["server.port"] = server_port
    for name, value in headers:
        key = name.lower()
        if key.startswith("dapr-") and key not in _SECRET_HEADERS:
            attributes[key] = value
    return attributes


def invoke_service_span_attributes(target_app_id: str, method: str) -> dict[str, AttributeValue]:
    """Attributes of the caller's CLIENT span for the gRPC ``Dapr/InvokeService`` API."""
    return {
        "rpc.service": SERVICE_INVOCATION,
        "net.peer.name": target_app_id,
        "dapr.protocol": "grpc",
        "dapr.api": INVOKE_SERVICE_API,
        "dapr.invoke_method": method,
    }


def callee_span_attributes(
    method: str, *, api: str = CALL_LOCAL_STREAM_API
) -> dict[str, AttributeValue]:
    """Attributes of the callee's SERVER span (``api`` is CALL_LOCAL_API for unary calls)."""
    return {
        "rpc.service": SERVICE_INVOCATION,
        "dapr.invoke_method": method,
        "dapr.api": api,
        "dapr.protocol": "grpc",
    }


# --------------------------------------------------------------------------- spans


class SpanHandle:
    """A span being timed. This base class is the no-op used when tracing is off.

    ``context`` is what to propagate downstream: the new span's context, or with
    tracing off the incoming parent unchanged (None when there was none).
    """

    __slots__ = ("_context",)

    def __init__(self, context: TraceContext | None) -> None:
        self._context = context

    @property
    def context(self) -> TraceContext | None:
        return self._context

    @property
    def recording(self) -> bool:
        """Whether attributes set on this span will be exported (it is sampled)."""
        return False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Add or replace one attribute."""

    def set_status_code(self, code: int, *, protocol: Protocol = "http") -> None:
        """Record the call's outcome: an HTTP status, or a gRPC code with protocol="grpc"."""

    def end(self) -> None:
        """Finish the span; it is exported later, off the calling thread."""

    def __enter__(self) -> SpanHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()


class _OtelSpanHandle(SpanHandle):
    __slots__ = ("_server", "_span")

    def __init__(self, span: trace_api.Span, server: bool, context: TraceContext) -> None:
        super().__init__(context)
        self._span = span
        self._server = server

    @property
    def recording(self) -> bool:
        return self._span.is_recording()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def set_status_code(self, code: int, *, protocol: Protocol = "http") -> None:
        # Error rules from the OpenTelemetry semantic conventions: a client fails
        # on any 4xx/5xx or non-OK code, a server only on its own faults.
        if protocol == "http":
            self._span.set_attribute("dapr.status_code", code)
            error = code >= 500 or (code >= 400 and not self._server)
        else:
            self._span.set_attribute("rpc.grpc.status_code", code)
            error = code in _GRPC_SERVER_ERRORS if self._server else code != 0
        if error:
            self._span.set_status(trace_api.Status(trace_api.StatusCode.ERROR))

    def end(self) -> None:
        self._span.end()


class _RandomIds(IdGenerator):
    """Span and trace ids from an injected generator, for reproducible tests."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def generate_span_id(self) -> int:
        while not (value := self._rng.getrandbits(64)):
            pass
        return value

    def generate_trace_id(self) -> int:
        while not (value := self._rng.getrandbits(128)):
            pass
        return value

    def is_trace_id_random(self) -> bool:
        return True


class _AbandonableExporter(SpanExporter):
    """Wraps an exporter so a bounded shutdown can abandon exports still in flight.

    Abandoning shuts the inner exporter down, which interrupts the OTLP
    exporters' retry back-off and closes their channel; later batches are
    dropped at once instead of each waiting out a timeout.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        return self._inner.export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._inner.shutdown()

    abandon = shutdown


def _zipkin_exporter(endpoint: str) -> SpanExporter:
    # Imported here: the exporter is optional and slow to import.
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    exporter: SpanExporter = ZipkinExporter(
        endpoint=endpoint, timeout=int(DEFAULT_OTLP_TIMEOUT_SECONDS)
    )
    return exporter


def _otlp_exporter(otlp: OtlpSettings) -> SpanExporter:
    # Imported here: each pulls in its transport (grpc or requests), and a
    # sidecar with tracing off should not pay for either.
    if otlp.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(
            endpoint=otlp.endpoint,
            insecure=not otlp.is_secure,
            headers=otlp.headers,
            timeout=otlp.timeout,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(
        endpoint=otlp.endpoint, headers=dict(otlp.headers), timeout=otlp.timeout
    )


def _run_in_thread(action: Callable[[], object], name: str) -> threading.Event:
    done = threading.Event()

    def run() -> None:
        try:
            action()
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


class Tracer:
    """Makes the sidecar's spans; with tracing off every method is a cheap no-op.

    Tracing is off when the sampling rate is 0 or nothing would export the spans
    (``exporter`` replaces the configured exporters, for tests).
    """

    def __init__(
        self,
        settings: TracingSettings,
        app_id: str,
        *,
        exporter: SpanExporter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._provider: TracerProvider | None = None
        self._tracer: trace_api.Tracer | None = None
        self._exporters: list[_AbandonableExporter] = []
        if settings.sampling_rate <= 0:
            return
        if exporter is not None:
            inner = [exporter]
        else:
            inner = [ConsoleSpanExporter(service_name=app_id)] if settings.stdout else []
            if settings.otlp is not None:
                inner.append(_otlp_exporter(settings.otlp))
            if settings.zipkin_endpoint is not None:
                inner.append(_zipkin_exporter(settings.zipkin_endpoint))
        if not inner:
            return
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
            resource=Resource.create({"service.name": app_id}),
            # The sidecar shuts tracing down itself, with a bound; the SDK's
            # atexit hook would wait up to 30 s on a dead collector.
            shutdown_on_exit=False,
            id_generator=_RandomIds(rng) if rng is not None else None,
        )
        timeout = settings.otlp.timeout if settings.otlp else DEFAULT_OTLP_TIMEOUT_SECONDS
        for item in inner:
            guarded = _AbandonableExporter(item)
            self._exporters.append(guarded)
            provider.add_span_processor(
                BatchSpanProcessor(
                    guarded,
                    max_queue_size=MAX_QUEUE_SIZE,
                    schedule_delay_millis=SCHEDULE_DELAY_MS,
                    max_export_batch_size=MAX_EXPORT_BATCH_SIZE,
                    export_timeout_millis=timeout * 1000,
                )
            )
        self._provider = provider
        self._tracer = provider.get_tracer("tether")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_client_span(
        self, name: str, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> SpanHandle:
        """Start a CLIENT span (a call this sidecar makes), child of ``parent`` if given."""
        if self._tracer is None:
            return SpanHandle(parent)
        return self._start(self._tracer, name, parent, attributes, trace_api.SpanKind.CLIENT)

    def start_server_span(
        self, name: str, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> SpanHandle:
        """Start a SERVER span (a call this sidecar serves), child of ``parent`` if given."""
        if self._tracer is None:
            return SpanHandle(parent)
        return self._start(self._tracer, name, parent, attributes, trace_api.SpanKind.SERVER)

    @staticmethod
    def _start(
        tracer: trace_api.Tracer,
        name: str,
        parent: TraceContext | None,
        attributes: Mapping[str, AttributeValue],
        kind: trace_api.SpanKind,
    ) -> SpanHandle:
        if parent is None:
            # An explicit empty context: never pick up a span from contextvars.
            context = otel_context.Context()
            tracestate = ""
        else:
            remote = trace_api.SpanContext(
                trace_id=int.from_bytes(parent.trace_id, "big"),
                span_id=int.from_bytes(parent.span_id, "big"),
                is_remote=True,
                trace_flags=trace_api.TraceFlags(parent.flags),
                trace_state=(
                    trace_api.TraceState.from_header([parent.tracestate])
                    if parent.tracestate
                    else None
                ),
            )
            context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote))
            tracestate = parent.tracestate
        span = tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        own = span.get_span_context()
        return _OtelSpanHandle(
            span,
            kind is trace_api.SpanKind.SERVER,
            TraceContext(
                own.trace_id.to_bytes(16, "big"),
                own.span_id.to_bytes(8, "big"),
                int(own.trace_flags),
                tracestate,
            ),
        )

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export what is queued; False if that did not finish within ``timeout`` seconds."""
        provider = self._provider
        if provider is None:
            return True
        return _run_in_thread(provider.force_flush, "tether-trace-flush").wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and stop, returning within about ``timeout`` seconds even if the collector is dead.

        Spans still unexported at the deadline are dropped; returns whether
        everything finished in time. Later spans are no-ops.
        """
        provider = self._provider
        if provider is None:
            return True
        self._provider = None
        self._tracer = None
        done = _run_in_thread(provider.shutdown, "tether-trace-shutdown")
        grace = min(_ABANDON_GRACE_SECONDS, timeout / 2)
        if done.wait(timeout - grace):
            return True
        for exporter in self._exporters:
            exporter.abandon()
        return done.wait(grace)
