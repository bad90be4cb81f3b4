"""The sidecar's ``Tracer``: starts and ends spans, over the OpenTelemetry SDK when
tracing is on (``proxy.observability.otel_tracing``, imported only then).

The proxy code talks to it in plain values (``TraceContext`` from
``proxy.observability.trace_context``, attribute dicts, status codes) and never
touches an OpenTelemetry type, so the request path reads the same whether tracing
is on or off.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

from proxy.observability.spans import AttributeValue, CallProtocol
from proxy.observability.trace_context import TraceContext
from proxy.observability.tracing_settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from proxy.observability.otel_tracing import OtelTracing


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


class Tracer:
    """Makes the sidecar's spans; with tracing off every method is a cheap no-op.

    Tracing is off when the settings sample nothing or nothing would export the
    spans (``exporter`` replaces the configured exporters, for tests). Only a
    tracer that is on imports OpenTelemetry.
    """

    def __init__(
        self,
        settings: TracingSettings,
        app_id: str,
        *,
        exporter: SpanExporter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._otel: OtelTracing | None = None
        if settings.sampling_rate <= 0 or (exporter is None and not settings.enabled):
            return
        from proxy.observability.otel_tracing import OtelTracing

        if exporter is not None:
            self._otel = OtelTracing(settings, app_id, [exporter], rng)
        else:
            self._otel = OtelTracing.configured(settings, app_id, rng)

    @property
    def enabled(self) -> bool:
        return self._otel is not None

    def start_client_span(
        self, name: str, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> SpanHandle:
        """Start a CLIENT span (a call this sidecar makes), child of ``parent`` if given."""
        if self._otel is None:
            return SpanHandle(parent)
        return self._otel.start(name, parent, attributes, server=False)

    def start_server_span(
        self, name: str, parent: TraceContext | None, attributes: Mapping[str, AttributeValue]
    ) -> SpanHandle:
        """Start a SERVER span (a call this sidecar serves), child of ``parent`` if given."""
        if self._otel is None:
            return SpanHandle(parent)
        return self._otel.start(name, parent, attributes, server=True)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and stop, returning within about ``timeout`` seconds even if the collector is dead.

        Spans still unexported at the deadline are dropped; returns whether
        everything finished in time. Later spans are no-ops.
        """
        otel = self._otel
        if otel is None:
            return True
        self._otel = None
        return otel.shutdown(timeout)
