"""The sidecar's ``Tracer``: starts and ends spans over the OpenTelemetry SDK.

The proxy code talks to it in plain values (``TraceContext`` from
``proxy.observability.trace_context``, attribute dicts, status codes) and never
touches an OpenTelemetry type, so the request path reads the same whether tracing
is on or off.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from proxy.observability.span_export import AbandonableExporter, batching, configured_exporters
from proxy.observability.spans import AttributeValue, CallProtocol, is_error, status_attribute
from proxy.observability.trace_context import TraceContext
from proxy.observability.tracing_settings import DEFAULT_OTLP_TIMEOUT_SECONDS, TracingSettings

# Extra wait after abandoning an export at shutdown, for the worker to notice.
_ABANDON_GRACE_SECONDS = 1.0


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

    def set_status_code(self, code: int, *, protocol: CallProtocol = "http") -> None:
        """Record the call's outcome: an HTTP status, or a gRPC code with protocol="grpc"."""

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Add or replace attributes of the span."""

    def end(self) -> None:
        """Finish the span; it is exported later, off the calling thread."""


class _OtelSpanHandle(SpanHandle):
    __slots__ = ("_server", "_span")

    def __init__(self, span: trace_api.Span, server: bool, context: TraceContext) -> None:
        super().__init__(context)
        self._span = span
        self._server = server

    def set_status_code(self, code: int, *, protocol: CallProtocol = "http") -> None:
        self._span.set_attribute(*status_attribute(code, protocol))
        if is_error(code, protocol, server=self._server):
            self._span.set_status(trace_api.Status(trace_api.StatusCode.ERROR))

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._span.set_attributes(attributes)

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

    Tracing is off when the settings sample nothing or nothing would export the
    spans (``exporter`` replaces the configured exporters, for tests).
    """

    def __init__(
        self,
        settings: TracingSettings,
        app_id: str,
        *,
        exporter: SpanExporter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: trace_api.Tracer | None = None
        self._exporters: list[AbandonableExporter] = []
        if settings.sampling_rate <= 0:
            return
        if exporter is not None:
            inner = [exporter]
        elif settings.enabled:
            inner = configured_exporters(settings, app_id)
        else:
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
            guarded = AbandonableExporter(item)
            self._exporters.append(guarded)
            provider.add_span_processor(batching(guarded, timeout))
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
