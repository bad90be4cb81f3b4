"""What the benchmark prints: figures of one run, medians over runs, PASS/MISS per target.

Pure: plain values in, lines of text out, so it is tested without processes. A run's
figures are a flat ``{key: value}`` map (``tether.cpu_us.caller``, ``nginx.sat_rps``,
``ratio.cpu_us.caller`` ...) so that runs combine key by key into median and spread.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

PERCENTILES = ("p50", "p90", "p99")
PAIRS = ("tether", "nginx", "floor")
ROLES = ("caller", "callee")

# Issue 12's targets for a tether pair.
TARGET_CPU_US = 200.0
TARGET_CPU_RATIO = 2.5
TARGET_ADDED_P90_MS = 1.5
TARGET_SATURATION_RPS = 4000.0
TARGET_RSS_MB = 50.0

Figures = dict[str, float]


@dataclass
class Scenario:
    name: str  # "fixed" or "saturation"
    target: str  # "direct", "tether", "nginx" or "floor" (bench.floor_proxy)
    url: str
    rate: float  # 0: closed loop
    duration: float
    warmup: float
    warmup_rate: float


@dataclass
class Result:
    scenario: Scenario
    completed: int = 0
    errors: int = 0
    queued: int = 0
    elapsed: float = math.nan
    latency_ms: dict[str, float] = field(default_factory=dict)
    service_ms: dict[str, float] = field(default_factory=dict)
    lag_ms: dict[str, float] = field(default_factory=dict)
    cpu_us: dict[str, float] = field(default_factory=dict)  # process name -> µs per request
    status: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else math.nan


@dataclass
class Run:
    """One run's measurements: results by (scenario name, target), and per proxy of each
    pair (``(pair, role)``) its process name and (RSS, peak RSS) in MB."""

    results: dict[tuple[str, str], Result]
    proxies: dict[tuple[str, str], str]
    memory: dict[tuple[str, str], tuple[float, float]]


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    runs: int


def added_ms(direct: Result, through: Result) -> dict[str, float]:
    return {
        key: through.latency_ms.get(key, math.nan) - direct.latency_ms.get(key, math.nan)
        for key in PERCENTILES
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when either is unknown or the denominator is not
    positive (an nginx pair adding no latency at all gives no meaningful ratio)."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator <= 0:
        return math.nan
    return numerator / denominator


def figures(run: Run) -> Figures:
    out: Figures = {}
    results = run.results
    for name, prefix in (("fixed", ""), ("saturation", "sat_")):
        direct = results.get((name, "direct"))
        if direct is None:
            continue
        for key in PERCENTILES:
            out[f"direct.{prefix}{key}_ms"] = direct.latency_ms.get(key, math.nan)
        out[f"direct.{prefix}rps"] = direct.throughput
        for pair in PAIRS:
            through = results.get((name, pair))
            if through is None:
                continue
            for key, value in added_ms(direct, through).items():
                out[f"{pair}.{prefix}added_{key}_ms"] = value
            out[f"{pair}.{prefix}rps"] = through.throughput
            out[f"{pair}.{prefix}errors"] = float(through.errors)
            for role in ROLES:
                process = run.proxies.get((pair, role))
                if process is not None:
                    out[f"{pair}.{prefix}cpu_us.{role}"] = through.cpu_us.get(process, math.nan)
    for (pair, role), (rss, peak) in run.memory.items():
        out[f"{pair}.rss_mb.{role}"] = rss
        out[f"{pair}.peak_rss_mb.{role}"] = peak
    for key in [k for k in out if k.startswith("tether.")]:
        other = out.get("nginx." + key.removeprefix("tether."))
        if other is not None and "errors" not in key:
            out["ratio." + key.removeprefix("tether.")] = ratio(out[key], other)
    return out


def summarise(runs: Sequence[Figures]) -> dict[str, Spread]:
    """Median, min and max of each figure over the runs that measured it."""
    keys = sorted({key for run in runs for key in run})
    out: dict[str, Spread] = {}
    for key in keys:
        values = [run[key] for run in runs if key in run and not math.isnan(run[key])]
        if values:
            out[key] = Spread(statistics.median(values), min(values), max(values), len(values))
        else:
            out[key] = Spread(math.nan, math.nan, math.nan, 0)
    return out


def number(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def spread_text(spread: Spread | None, digits: int) -> str:
    """``median (min-max)``; just the value when one run measured it."""
    if spread is None or spread.runs == 0:
        return "n/a"
    if spread.runs == 1 or spread.low == spread.high:
        return number(spread.median, digits)
    low, high = number(spread.low, digits), number(spread.high, digits)
    return f"{number(spread.median, digits)} ({low}-{high})"


# (label, key without the pair prefix, digits)
SUMMARY_ROWS: tuple[tuple[str, str, int], ...] = (
    ("CPU µs/req, caller proxy, fixed rate", "cpu_us.caller", 0),
    ("CPU µs/req, callee proxy, fixed rate", "cpu_us.callee", 0),
    ("CPU µs/req, caller proxy, saturation", "sat_cpu_us.caller", 0),
    ("CPU µs/req, callee proxy, saturation", "sat_cpu_us.callee", 0),
    ("added latency p50 ms, fixed rate", "added_p50_ms", 3),
    ("added latency p90 ms, fixed rate", "added_p90_ms", 3),
    ("added latency p99 ms, fixed rate", "added_p99_ms", 3),
    ("throughput req/s, fixed rate", "rps", 0),
    ("saturation req/s", "sat_rps", 0),
    ("RSS MB, caller proxy (end)", "rss_mb.caller", 1),
    ("RSS MB, callee proxy (end)", "rss_mb.callee", 1),
    ("peak RSS MB, caller proxy", "peak_rss_mb.caller", 1),
    ("peak RSS MB, callee proxy", "peak_rss_mb.callee", 1),
    ("errors, fixed rate", "errors", 0),
    ("errors, saturation", "sat_errors", 0),
)


def summary_lines(summary: Mapping[str, Spread], runs: int) -> list[str]:
    head = "median" if runs == 1 else f"median of {runs} runs (min-max)"
    rows = [("", "tether", "nginx", "tether ÷ nginx", "Python floor")]
    for label, key, digits in SUMMARY_ROWS:
        rows.append(
            (
                label,
                spread_text(summary.get(f"tether.{key}"), digits),
                spread_text(summary.get(f"nginx.{key}"), digits),
                spread_text(summary.get(f"ratio.{key}"), 2) if "errors" not in key else "",
                spread_text(summary.get(f"floor.{key}"), digits),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"== summary: {head} =="]
    for row in rows:
        cells = "".join(
            f"{cell:>{width + 3}}" for cell, width in zip(row[1:], widths[1:], strict=True)
        )
        lines.append(f"  {row[0]:{widths[0]}}{cells}")
    direct = ", ".join(
        f"{key} {spread_text(summary.get(f'direct.{key}_ms'), 3)} ms" for key in PERCENTILES
    )
    lines.append(f"  direct (no proxy), fixed rate: {direct}")
    lines.append(
        f"  direct (no proxy), saturation: {spread_text(summary.get('direct.sat_rps'), 0)} req/s"
    )
    return lines


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str

    def line(self) -> str:
        return f"  {'PASS' if self.ok else 'MISS'}  {self.text}"


def _at_most(value: float, limit: float) -> bool:
    return not math.isnan(value) and value <= limit


def targets(summary: Mapping[str, Spread], rate: float) -> list[Verdict]:
    """Issue 12's table, judged on the medians: a NaN (not measured) is a MISS."""

    def med(key: str) -> float:
        spread = summary.get(key)
        return spread.median if spread is not None else math.nan

    out: list[Verdict] = []
    for role in ROLES:
        cpu, times = med(f"tether.cpu_us.{role}"), med(f"ratio.cpu_us.{role}")
        nginx = (
            "no nginx pair in this run"
            if math.isnan(med(f"nginx.cpu_us.{role}"))
            else (f"{number(times, 2)}x nginx's {number(med(f'nginx.cpu_us.{role}'), 0)} µs")
        )
        out.append(
            Verdict(
                _at_most(cpu, TARGET_CPU_US) and _at_most(times, TARGET_CPU_RATIO),
                f"CPU per request, {role} sidecar at {rate:g} req/s: {number(cpu, 0)} µs, "
                f"{nginx} (target <= {TARGET_CPU_US:g} µs and <= {TARGET_CPU_RATIO:g}x nginx; "
                f"at saturation {number(med(f'tether.sat_cpu_us.{role}'), 0)} µs)",
            )
        )
    p90, held = med("tether.added_p90_ms"), med("tether.rps")
    # Below the offered rate requests queue in the load generator, and that is the latency.
    short = f"; the pair held only {number(held, 0)} req/s" if held < 0.98 * rate else ""
    out.append(
        Verdict(
            _at_most(p90, TARGET_ADDED_P90_MS),
            f"added latency p90 at {rate:g} req/s: {number(p90, 3)} ms "
            f"(target <= {TARGET_ADDED_P90_MS:g} ms at 1000 req/s{short})",
        )
    )
    sat = med("tether.sat_rps")
    out.append(
        Verdict(
            not math.isnan(sat) and sat >= TARGET_SATURATION_RPS,
            f"saturation throughput of the pair: {number(sat, 0)} req/s "
            f"(target >= {TARGET_SATURATION_RPS:,.0f} req/s)",
        )
    )
    for role in ROLES:
        peak, now = med(f"tether.peak_rss_mb.{role}"), med(f"tether.rss_mb.{role}")
        out.append(
            Verdict(
                _at_most(peak, TARGET_RSS_MB),
                f"peak RSS, {role} sidecar: {number(peak, 1)} MB (at the end "
                f"{number(now, 1)} MB; target <= {TARGET_RSS_MB:g} MB)",
            )
        )
    return out


def _ms(value: float) -> str:
    return f"{value:8.3f}" if not math.isnan(value) else "     n/a"


def scenario_lines(
    title: str, results: Mapping[str, Result], proxies: Mapping[tuple[str, str], str]
) -> list[str]:
    """One scenario (fixed rate or saturation) of one run: a row per target present, and
    the CPU of the processes each target's requests pass through."""
    lines = [f"  -- {title}"]
    lines.extend(
        f"  {r.scenario.target}: FAILED: {r.problem}" for r in results.values() if r.problem
    )
    lines.append(
        f"  {'':18}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'req/s':>10}{'errors':>8}{'queued':>8}"
    )
    for target, r in results.items():
        lat = r.latency_ms
        lines.append(
            f"  {target:18}{_ms(lat.get('p50', math.nan))} {_ms(lat.get('p90', math.nan))} "
            f"{_ms(lat.get('p99', math.nan))}{r.throughput:10.1f}{r.errors:8d}{r.queued:8d}"
        )
    direct = results.get("direct")
    for target, r in results.items():
        if direct is not None and target != "direct":
            added = added_ms(direct, r)
            lines.append(
                f"  {'added by ' + target:18}{_ms(added['p50'])} {_ms(added['p90'])} "
                f"{_ms(added['p99'])}"
            )
    for target, r in results.items():
        involved = [name for (pair, _), name in proxies.items() if pair == target]
        involved += ["app", "loadgen"]
        if r.cpu_us:
            parts = ", ".join(f"{n} {r.cpu_us[n]:.0f}" for n in involved if n in r.cpu_us)
            lines.append(f"  CPU µs per request ({target} run): {parts}")
        if r.errors:
            lines.append(
                f"  {target} errors, e.g.: {'; '.join(r.error_samples)} (status {r.status})"
            )
    return lines


def run_lines(run: Run, titles: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    for name, title in titles.items():
        results = {t: r for (n, t), r in run.results.items() if n == name}
        if results:
            lines.extend(scenario_lines(title, results, run.proxies))
    lines.append("  -- memory (RSS now / peak)")
    for (pair, role), (rss, peak) in run.memory.items():
        process = run.proxies.get((pair, role), "?")
        lines.append(f"  {pair} {role} ({process}):{rss:>8.1f} MB / {peak:6.1f} MB")
    return lines


def verdict_lines(verdicts: Iterable[Verdict]) -> list[str]:
    return ["== targets (issue 12) ==", *(v.line() for v in verdicts)]
