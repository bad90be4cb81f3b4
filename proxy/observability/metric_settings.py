"""What the operator's ``spec.metric`` asks of the metrics, and the label rules it implies.

Dapr's HTTP label rules: ``increasedCardinality`` (raw paths as labels, the default),
``pathMatching`` templates that fold paths into one label value, and ``excludeVerbs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

# Dapr's default latency distribution, in milliseconds. Kept here, with the settings,
# so that reading settings does not load prometheus_client (dapr_metrics does).
DAPR_LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200,
    250, 300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip


@dataclass(frozen=True)
class MetricSettings:
    """Dapr's ``spec.metric`` with Dapr's defaults, plus tether's series cap."""

    increased_cardinality: bool = True
    path_matching: tuple[str, ...] = ()
    exclude_verbs: bool = False
    latency_buckets: tuple[float, ...] = DAPR_LATENCY_BUCKETS_MS
    max_series_per_metric: int = 1000

    def __post_init__(self) -> None:
        if self.max_series_per_metric < 1:
            raise ValueError("max_series_per_metric must be at least 1")
        buckets = self.latency_buckets
        if not buckets or any(b >= c for b, c in pairwise(buckets)):
            raise ValueError("latency_buckets must be a non-empty, strictly increasing list")


class PathTemplates:
    """Dapr's ``pathMatching`` templates, compiled once; ``match`` is pure.

    A template is ``/``-separated segments; ``{name}`` matches exactly one non-empty
    segment, anything else matches itself. When several templates match, the one with
    the most literal segments wins, then the one listed first.
    """

    __slots__ = ("_by_length",)

    def __init__(self, templates: Sequence[str]) -> None:
        compiled: dict[int, list[tuple[int, int, tuple[str | None, ...], str]]] = {}
        for index, template in enumerate(templates):
            segments = tuple(
                None if s.startswith("{") and s.endswith("}") and len(s) > 2 else s
                for s in _segments(template)
            )
            literals = sum(s is not None for s in segments)
            compiled.setdefault(len(segments), []).append((-literals, index, segments, template))
        self._by_length: dict[int, tuple[tuple[tuple[str | None, ...], str], ...]] = {
            length: tuple((segs, tpl) for _, _, segs, tpl in sorted(entries))
            for length, entries in compiled.items()
        }

    def __bool__(self) -> bool:
        return bool(self._by_length)

    def match(self, path: str) -> str | None:
        """The template ``path`` matches, or None."""
        segments = _segments(path)
        for pattern, template in self._by_length.get(len(segments), ()):
            for want, got in zip(pattern, segments, strict=True):
                if (want is None and not got) or (want is not None and want != got):
                    break
            else:
                return template
        return None


def _segments(path: str) -> list[str]:
    path = path.partition("?")[0]
    return path[1:].split("/") if path.startswith("/") else path.split("/")


class HttpLabels:
    """The ``method`` and ``path`` label values ``spec.metric.http`` asks for; pure."""

    __slots__ = ("_exclude_verbs", "_increased", "_paths")

    def __init__(self, settings: MetricSettings) -> None:
        self._increased = settings.increased_cardinality
        self._exclude_verbs = settings.exclude_verbs
        self._paths = PathTemplates(settings.path_matching)

    def __call__(self, method: str, path: str) -> tuple[str, str]:
        template = self._paths.match(path) if self._paths else None
        if template is not None:
            path = template
        elif not self._increased:
            path = ""
        elif "?" in path:
            path = path.partition("?")[0]
        return ("" if self._exclude_verbs else method), path
