"""One Prometheus exposition out of the workers' own (``--workers N``), so a scrape
of the metrics port shows the whole sidecar under Dapr's names.

Per identical series (name and labels):

- counters, histogram buckets, ``_sum`` and ``_count``: summed;
- gauges: the largest value. tether's gauges are states and facts every worker
  holds about the same thing (a breaker's state, 0 closed to 2 open; the age of an
  answer; instances known or ejected), so a sum would count one thing N times; the
  largest is the worst state any worker is in;
- ``process_*`` and ``python_*``: kept per process, with a ``worker`` label
  (``0`` .. ``N-1``, and ``supervisor`` for the supervisor itself), because a
  process's memory or start time is a fact of that process;
  ``sum(process_cpu_seconds_total)`` is the sidecar's CPU.

The input is the workers' own output, written by one piece of code: no timestamps,
labels always in the same order. So a series is matched on its text as written,
which is exact here and needs no re-parsing of label values (prometheus_client's
parser renames Dapr's counters that lack ``_total``, so it cannot be used to
round-trip them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

PER_PROCESS_PREFIXES = ("process_", "python_")
WORKER_LABEL = "worker"


@dataclass
class _Family:
    help_line: str | None = None
    type_line: str | None = None
    kind: str = "untyped"
    # series text -> value, in the order first seen
    series: dict[str, float] = field(default_factory=dict)


_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")
# Go's float text, as prometheus_client writes values (its function has no annotations).
_go_float: Callable[[float], str] = floatToGoString


def _family_of(families: dict[str, _Family], family_name: str, sample_name: str) -> str:
    """The family a sample belongs to: the one announced just before it, if the sample
    is one of its series, else its own (untyped, as Prometheus reads a bare sample)."""
    if family_name and any(sample_name == family_name + end for end in _SUFFIXES):
        return family_name
    families.setdefault(sample_name, _Family())
    return sample_name


def with_label(series: str, name: str, value: str) -> str:
    """``series`` (``metric`` or ``metric{...}``) with one more label, first."""
    label = f'{name}="{value}"'
    metric, brace, rest = series.partition("{")
    if not brace or rest == "}":
        return f"{metric}{{{label}}}"
    return f"{metric}{{{label},{rest}"


def _combine(kind: str, sample_name: str, old: float, new: float) -> float:
    if sample_name.endswith("_created"):
        return min(old, new)
    if kind == "gauge":
        return max(old, new)
    return old + new


def merge_expositions(parts: Sequence[tuple[str, str]]) -> str:
    """``parts``: (worker label, that worker's text exposition) -> one exposition."""
    families: dict[str, _Family] = {}
    for worker, text in parts:
        current_name = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                words = line.split(" ", 3)
                if len(words) >= 3 and words[1] in ("HELP", "TYPE"):
                    current_name = words[2]
                    current = families.setdefault(current_name, _Family())
                    if words[1] == "HELP" and current.help_line is None:
                        current.help_line = line
                    elif words[1] == "TYPE" and current.type_line is None:
                        current.type_line = line
                        current.kind = words[3].strip() if len(words) > 3 else "untyped"
                continue
            series, _, value_text = line.rpartition(" ")
            try:
                value = float(value_text)
            except ValueError:
                continue  # not a sample line: the producer never writes one
            sample_name = series.partition("{")[0]
            name = _family_of(families, current_name, sample_name)
            family = families[name]
            if name.startswith(PER_PROCESS_PREFIXES):
                family.series[with_label(series, WORKER_LABEL, worker)] = value
                continue
            old = family.series.get(series)
            family.series[series] = (
                value if old is None else _combine(family.kind, sample_name, old, value)
            )
    lines: list[str] = []
    for family in families.values():
        if family.help_line is not None:
            lines.append(family.help_line)
        if family.type_line is not None:
            lines.append(family.type_line)
        lines.extend(f"{series} {_go_float(value)}" for series, value in family.series.items())
    return "\n".join(lines) + "\n" if lines else ""
