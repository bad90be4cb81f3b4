"""tether's name-resolution metrics (Dapr has none), exported beside Dapr's families.

Labels: ``app_id`` (this sidecar's app), ``dst_app_id`` and ``dst_namespace`` (the app
being resolved); past the series cap the destination becomes ``_overflow``.

- ``tether_resolution_lookups_total{result}``: lookups in the discovery system (DNS
  queries, registry reads), ``result`` = ``ok``, ``not_found`` or ``unavailable``. Calls
  served from the cache make none.
- ``tether_resolution_failures_total{reason}``: calls that got no instance
  (``not_found``: the app does not exist; ``unavailable``: lookups fail, nothing cached).
- ``tether_resolution_stale_total``: calls served an answer past its TTL because
  refreshes fail (the stale window).
- ``tether_resolution_answer_age_seconds``: age of the answer in use, set when a fresh
  one arrives (0) and whenever a stale one is served.
- ``tether_resolution_instances``: instances in the latest answer.
- ``tether_resolution_ejections_total`` and ``tether_resolution_ejected_instances``:
  outlier ejections so far, and instances out of rotation now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge

from proxy.observability.dapr_exposition import DaprCollector, Export, Kind
from proxy.observability.series_cap import CappedFamily, M

_DST = ("app_id", "dst_app_id", "dst_namespace")


class ResolutionFamilies:
    def __init__(self, collector: DaprCollector, *, max_series: int) -> None:
        self._collector = collector
        self._max_series = max_series
        self.lookups = self._counter(
            "tether_resolution_lookups_total",
            "Lookups in the discovery system, by result.",
            (*_DST, "result"),
        )
        self.failures = self._counter(
            "tether_resolution_failures_total",
            "Calls that could not be given an instance, by reason.",
            (*_DST, "reason"),
        )
        self.stale = self._counter(
            "tether_resolution_stale_total",
            "Calls served a stale answer because refreshing it failed.",
            _DST,
        )
        self.ejections = self._counter(
            "tether_resolution_ejections_total",
            "Instances taken out of rotation after connection failures.",
            _DST,
        )
        self.age = self._gauge(
            "tether_resolution_answer_age_seconds",
            "Age of the answer in use: 0 when refreshed, its age when served stale.",
        )
        self.instances = self._gauge(
            "tether_resolution_instances", "Instances in the latest answer."
        )
        self.ejected = self._gauge(
            "tether_resolution_ejected_instances", "Instances out of rotation now."
        )

    def _define(self, name: str, doc: str, metric: M, kind: Kind) -> CappedFamily[M]:
        self._collector.add(Export(name, doc, kind, metric))
        return CappedFamily(name, metric, (1, 2), self._max_series)

    def _counter(self, name: str, doc: str, labels: Sequence[str]) -> CappedFamily[Counter]:
        return self._define(name, doc, Counter(name, doc, labels, registry=None), "counter")

    def _gauge(self, name: str, doc: str, labels: Iterable[str] = _DST) -> CappedFamily[Gauge]:
        return self._define(name, doc, Gauge(name, doc, list(labels), registry=None), "gauge")
