"""The series cap: at most so many label combinations per metric family.

Past the cap, a new combination is recorded with its high-cardinality label values
(paths, verbs, app ids, gRPC methods, resiliency names and targets) replaced by
``_overflow``, and one warning per family goes to logger ``tether.metrics``.
Low-cardinality labels (status codes, ``type``, policy kind, flow direction) are
kept, so the overflow series stay few and still say something. (Dapr has no cap: a
path label with ids in it grows without bound.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

_log = logging.getLogger("tether.metrics")

OVERFLOW = "_overflow"

M = TypeVar("M", Counter, Gauge, Histogram)


class CappedFamily(Generic[M]):
    """One metric family: its bound children, the cap and the overflow rule.

    ``overflow_labels`` are the positions of the labels replaced past the cap.
    """

    __slots__ = ("_children", "_limit", "_lock", "_overflow_at", "_warned", "metric", "name")

    def __init__(self, name: str, metric: M, overflow_labels: Iterable[int], limit: int) -> None:
        self.name = name
        self.metric: M = metric
        self._overflow_at = frozenset(overflow_labels)
        self._limit = limit
        self._children: dict[tuple[str, ...], M] = {}
        self._lock = threading.Lock()
        self._warned = False

    def child(self, key: tuple[str, ...]) -> M:
        """The series for label values ``key`` (or its overflow series past the cap)."""
        found = self._children.get(key)
        if found is not None:
            return found
        return self.bind(key)[1]

    def bind(self, key: tuple[str, ...]) -> tuple[tuple[str, ...], M]:
        """The key actually used (maybe the overflow one) and its child."""
        with self._lock:
            found = self._children.get(key)
            if found is not None:
                return key, found
            if len(self._children) >= self._limit:
                key = tuple(OVERFLOW if i in self._overflow_at else v for i, v in enumerate(key))
                found = self._children.get(key)
                if found is not None:
                    return key, found
                if not self._warned:
                    self._warned = True
                    _log.warning(
                        "metric %s reached %d series; new label values are recorded as %r",
                        self.name,
                        self._limit,
                        OVERFLOW,
                    )
            created = self.metric.labels(*key)
            self._children[key] = created
            return key, created

    def drop(self, key: tuple[str, ...]) -> None:
        """Forget one series (a gauge whose label changed)."""
        with self._lock:
            if self._children.pop(key, None) is not None:
                self.metric.remove(*key)
