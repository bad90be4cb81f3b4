"""What the gRPC benchmark prints: per run and as medians over runs.

Pure: ``bench.report.Result`` values in, a flat ``{key: value}`` map of figures per run
(``proxy.added_p90_ms``, ``invoke.cpu_us.caller``, ``rss_mb.checkout`` ...) combined
over runs by ``bench.report.summarise``, lines of text out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.report import PERCENTILES, Figures, Result, Spread, spread_text


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    short: str  # how an added latency names this target as its reference
    reference: str = ""  # the target whose latency this one's added latency is against
    caller: str = ""  # the process names of the sidecars its calls pass through
    callee: str = ""


CALLER, HTTP_CALLEE, GRPC_CALLEE = "checkout", "orders", "greeter"
TARGETS = (
    Target("direct", "(a) gRPC, direct to the grpcio app", "direct gRPC"),
    Target(
        "proxy",
        "(b) gRPC proxying through a tether pair (dapr-app-id), grpcio app",
        "gRPC proxying",
        "direct",
        CALLER,
        GRPC_CALLEE,
    ),
    Target(
        "invoke",
        "(c) Dapr gRPC API InvokeService through a tether pair, HTTP app",
        "InvokeService",
        "direct",
        CALLER,
        HTTP_CALLEE,
    ),
    Target("direct_http", "HTTP/1.1, direct to the HTTP app (bench.loadgen)", "direct HTTP"),
    Target(
        "http_api",
        "Dapr HTTP API invoke through a tether pair, HTTP app (bench.loadgen)",
        "HTTP API",
        "direct_http",
        CALLER,
        HTTP_CALLEE,
    ),
)
BY_KEY = {target.key: target for target in TARGETS}


def _usable(result: Result | None) -> bool:
    return result is not None and not result.problem


def figures(results: Mapping[str, Result], memory: Mapping[str, tuple[float, float]]) -> Figures:
    """One run's figures: latency, added latency against the target's reference,
    throughput, errors, CPU µs per call of the sidecars, (peak) RSS per sidecar."""
    out: Figures = {}
    for target in TARGETS:
        result = results.get(target.key)
        if result is None or not _usable(result):
            continue
        for p in PERCENTILES:
            out[f"{target.key}.{p}_ms"] = result.latency_ms.get(p, math.nan)
        out[f"{target.key}.rps"] = result.throughput
        out[f"{target.key}.errors"] = float(result.errors)
        reference = results.get(target.reference)
        if target.reference and reference is not None and _usable(reference):
            for p in PERCENTILES:
                through = result.latency_ms.get(p, math.nan)
                out[f"{target.key}.added_{p}_ms"] = through - reference.latency_ms.get(p, math.nan)
        for role, name in (("caller", target.caller), ("callee", target.callee)):
            if name:
                out[f"{target.key}.cpu_us.{role}"] = result.cpu_us.get(name, math.nan)
    for name, (rss, peak) in memory.items():
        out[f"rss_mb.{name}"] = rss
        out[f"peak_rss_mb.{name}"] = peak
    return out


def _triple(summary: Mapping[str, Spread], prefix: str) -> str:
    return " / ".join(spread_text(summary.get(f"{prefix}{p}_ms"), 3) for p in PERCENTILES)


def target_lines(target: Target, summary: Mapping[str, Spread], problem: str | None) -> list[str]:
    """One target's block of the summary; "not available" with the reason when it
    could not be measured in any run."""
    lines = [f"  {target.label}"]
    if f"{target.key}.p50_ms" not in summary:
        lines.append(f"      not available: {problem or 'not measured'}")
        return lines
    key = target.key
    lines.append(f"      latency p50 / p90 / p99 ms:  {_triple(summary, key + '.')}")
    if f"{key}.added_p50_ms" in summary:
        reference = BY_KEY[target.reference].short
        lines.append(f"      added vs {reference + ':':20}{_triple(summary, key + '.added_')}")
    if target.caller:
        caller = spread_text(summary.get(f"{key}.cpu_us.caller"), 0)
        callee = spread_text(summary.get(f"{key}.cpu_us.callee"), 0)
        lines.append(
            f"      CPU µs per call:             caller sidecar ({target.caller}) "
            f"{caller}, callee sidecar ({target.callee}) {callee}"
        )
    rps = spread_text(summary.get(f"{key}.rps"), 0)
    errors = spread_text(summary.get(f"{key}.errors"), 0)
    lines.append(f"      calls/s held: {rps}, errors: {errors}")
    if problem:
        lines.append(f"      (failed in some run: {problem})")
    return lines


def summary_lines(
    summary: Mapping[str, Spread], runs: int, problems: Mapping[str, str], sidecars: Sequence[str]
) -> list[str]:
    head = "one run" if runs == 1 else f"median of {runs} runs (min-max)"
    lines = [f"== summary: {head} =="]
    for target in TARGETS:
        if target.key in problems or f"{target.key}.p50_ms" in summary:
            lines.extend(target_lines(target, summary, problems.get(target.key)))
    memory = ", ".join(
        f"{name} {spread_text(summary.get(f'rss_mb.{name}'), 1)} "
        f"(peak {spread_text(summary.get(f'peak_rss_mb.{name}'), 1)})"
        for name in sidecars
        if f"rss_mb.{name}" in summary
    )
    lines.append(f"  sidecar RSS MB at the end of a run: {memory or 'n/a'}")
    return lines


def _ms(value: float) -> str:
    return f"{value:9.3f}" if not math.isnan(value) else "      n/a"


def run_lines(
    results: Mapping[str, Result], memory: Mapping[str, tuple[float, float]]
) -> list[str]:
    """One run: a row per target (latency, added latency, calls/s, errors), the CPU of
    every process the calls passed through, each sidecar's memory."""
    lines = [f"  {'':12}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'calls/s':>10}{'errors':>8}"]
    for target in TARGETS:
        result = results.get(target.key)
        if result is None:
            continue
        if result.problem:
            lines.append(f"  {target.key:12} not available: {result.problem}")
            continue
        lat = result.latency_ms
        cells = "".join(_ms(lat.get(p, math.nan)) for p in PERCENTILES)
        lines.append(f"  {target.key:12}{cells}{result.throughput:10.1f}{result.errors:8d}")
        reference = results.get(target.reference)
        if target.reference and reference is not None and _usable(reference):
            added = "".join(
                _ms(lat.get(p, math.nan) - reference.latency_ms.get(p, math.nan))
                for p in PERCENTILES
            )
            lines.append(f"  {'  added':12}{added}  (vs {target.reference})")
        if result.errors:
            lines.append(f"    errors, e.g.: {'; '.join(result.error_samples)} ({result.status})")
    for target in TARGETS:
        result = results.get(target.key)
        if result is not None and result.cpu_us:
            parts = ", ".join(f"{name} {us:.0f}" for name, us in result.cpu_us.items())
            lines.append(f"  CPU µs per call ({target.key}): {parts}")
    for name, (rss, peak) in memory.items():
        lines.append(f"  {name} sidecar RSS: {rss:.1f} MB now, {peak:.1f} MB peak")
    return lines
