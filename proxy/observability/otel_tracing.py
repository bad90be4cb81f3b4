"""Tracing over the OpenTelemetry SDK: the provider, its exporters and real spans.

Only ``Tracer`` imports this module, and only when the settings trace (a
sampling rate above zero and somewhere to export to). The SDK, the API and
the exporters cost a sidecar about 2 MB of memory (the OTLP exporters several
more), which a sidecar with tracing off does not pay.
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
from proxy.observability.tracer import SpanHandle
from proxy.observability.tracing_settings import DEFAULT_OTLP_TIMEOUT_SECONDS, TracingSettings

# Extra wait after abandoning an export at shutdown, for the worker to notice.
_ABANDON_GRACE_SECONDS = 1.0


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


class OtelTracing:
    """A tracer provider exporting through ``exporters`` (already chosen by the caller)."""

    def __init__(
        self,
        settings: TracingSettings,
        app_id: str,
        exporters: list[SpanExporter],
        rng: random.Random | None,
    ) -> None:
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
            resource=Resource.create({"service.name": app_id}),
            # The sidecar shuts tracing down itself, with a bound; the SDK's
            # atexit hook would wait up to 30 s on a dead collector.
            shutdown_on_exit=False,
            id_generator=_RandomIds(rng) if rng is not None else None,
        )
        timeout = settings.otlp.timeout if settings.otlp else DEFAULT_OTLP_TIMEOUT_SECONDS
        self._exporters: list[AbandonableExporter] = []
        for item in exporters:
            guarded = AbandonableExporter(item)
            self._exporters.append(guarded)
            provider.add_span_processor(batching(guarded, timeout))
        self._provider = provider
        self._tracer = provider.get_tracer("tether")

    @classmethod
    def configured(
        cls, settings: TracingSettings, app_id: str, rng: random.Random | None
    ) -> OtelTracing:
        """Tracing to the exporters the settings name (stdout, OTLP, Zipkin)."""
        return cls(settings, app_id, configured_exporters(settings, app_id), rng)

    def start(
        self,
        name: str,
        parent: TraceContext | None,
        attributes: Mapping[str, AttributeValue],
        *,
        server: bool,
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
        kind = trace_api.SpanKind.SERVER if server else trace_api.SpanKind.CLIENT
        span = self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        own = span.get_span_context()
        return _OtelSpanHandle(
            span,
            server,
            TraceContext(
                own.trace_id.to_bytes(16, "big"),
                own.span_id.to_bytes(8, "big"),
                int(own.trace_flags),
                tracestate,
            ),
        )

    def shutdown(self, timeout: float) -> bool:
        """Flush and stop within about ``timeout`` seconds; see ``Tracer.shutdown``."""
        done = _run_in_thread(self._provider.shutdown, "tether-trace-shutdown")
        grace = min(_ABANDON_GRACE_SECONDS, timeout / 2)
        if done.wait(timeout - grace):
            return True
        for exporter in self._exporters:
            exporter.abandon()
        return done.wait(grace)
