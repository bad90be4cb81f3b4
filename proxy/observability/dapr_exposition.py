"""Prometheus exposition under Dapr's exact metric names.

Dapr exports through OpenCensus: every metric is ``dapr_`` + the measure name with ``/``
and ``.`` turned into ``_``; Count views are counters, Distribution views histograms
and LastValue views gauges. Its counters keep the view name as-is, so some end in
``_total`` (``dapr_runtime_service_invocation_req_sent_total``) and some do not
(``dapr_http_server_request_count``). prometheus-client always names a counter's
samples ``<name>_total`` and its ``# TYPE`` line likewise, so the values live in
prometheus-client metric objects and one collector re-exports them under Dapr's
exact names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Export:
    """One family to export: Dapr's name and help text, and where the values live."""

    name: str
    documentation: str
    kind: Kind
    source: Counter | Gauge | Histogram


class DaprCollector(Collector):
    """Re-exports prometheus-client metrics under Dapr's exact names, without ``_created``."""

    def __init__(self) -> None:
        self._exports: list[Export] = []

    def add(self, export: Export) -> None:
        self._exports.append(export)

    @property
    def bare_counters(self) -> list[str]:
        """Counters whose Dapr name does not end in ``_total``."""
        return [
            e.name for e in self._exports if e.kind == "counter" and not e.name.endswith("_total")
        ]

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


def exposition(registry: CollectorRegistry, collector: DaprCollector) -> tuple[bytes, str]:
    """The Prometheus text exposition (format 0.0.4) of ``registry`` and its content type."""
    body = generate_latest(registry)
    # generate_latest names every counter's HELP/TYPE lines "<name>_total"; Dapr's
    # counters without that suffix must be announced under their own name.
    for name in collector.bare_counters:
        raw = name.encode()
        body = body.replace(b"# HELP " + raw + b"_total ", b"# HELP " + raw + b" ", 1)
        body = body.replace(
            b"# TYPE " + raw + b"_total counter\n", b"# TYPE " + raw + b" counter\n", 1
        )
    return body, CONTENT_TYPE_PLAIN_0_0_4
