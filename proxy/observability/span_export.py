"""Where ended spans go: the exporters the settings ask for, behind bounded batching.

Exporting never blocks a call: ended spans are appended to a bounded in-memory
queue and a background thread exports them in batches. A dead or slow collector
stalls only that thread; once the queue is full, new spans are dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from proxy.observability.tracing_settings import (
    DEFAULT_OTLP_TIMEOUT_SECONDS,
    OtlpSettings,
    TracingSettings,
)

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


class AbandonableExporter(SpanExporter):
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


def configured_exporters(settings: TracingSettings, app_id: str) -> list[SpanExporter]:
    """One exporter per destination the settings name (stdout, OTLP, Zipkin)."""
    exporters: list[SpanExporter] = []
    if settings.stdout:
        exporters.append(ConsoleSpanExporter(service_name=app_id))
    if settings.otlp is not None:
        exporters.append(otlp_exporter(settings.otlp))
    if settings.zipkin_endpoint is not None:
        exporters.append(_zipkin_exporter(settings.zipkin_endpoint))
    return exporters


def batching(exporter: AbandonableExporter, export_timeout: float) -> SpanProcessor:
    """The bounded, batching processor that feeds ``exporter`` off the calling thread."""
    return BatchSpanProcessor(
        exporter,
        max_queue_size=MAX_QUEUE_SIZE,
        schedule_delay_millis=SCHEDULE_DELAY_MS,
        max_export_batch_size=MAX_EXPORT_BATCH_SIZE,
        export_timeout_millis=export_timeout * 1000,
    )


def otlp_exporter(otlp: OtlpSettings) -> SpanExporter:
    """The OTLP exporter (gRPC or HTTP) for ``otlp``."""
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


def _zipkin_exporter(endpoint: str) -> SpanExporter:
    # Imported here: the exporter is optional and slow to import.
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    exporter: SpanExporter = ZipkinExporter(
        endpoint=endpoint, timeout=int(DEFAULT_OTLP_TIMEOUT_SECONDS)
    )
    return exporter
