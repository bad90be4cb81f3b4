"""One measured scenario: ``bench.loadgen`` in its own process, and the CPU of the
watched processes sampled around exactly its measured window."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.loadgen import percentile
from bench.procs import REPO, Proc, proc_cpu, stop
from bench.report import Result, Scenario

PERCENTILES = (50.0, 90.0, 99.0)
BODY_SIZE = 1024


class Window(Protocol):
    """Something run over exactly a scenario's measured window (``perf record``)."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


class LineReader:
    """Lines from a child's stdout with a deadline (no thread, no blocking read)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        self.fd = popen.stdout.fileno()
        self.buffer = b""
        self.eof = False

    def line(self, deadline: float) -> str | None:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
                return line.decode(errors="replace")
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if chunk:
                    self.buffer += chunk
                else:
                    self.eof = True


def percentiles_ms(values: list[float]) -> dict[str, float]:
    """p50/p90/p99 in milliseconds of latencies in seconds (sorts ``values``)."""
    values.sort()
    return {f"p{p:g}": percentile(values, p) * 1e3 for p in PERCENTILES}


def measured_window(
    popen: subprocess.Popen[bytes], reader: LineReader, deadline: float, counted: Sequence[Proc]
) -> dict[str, float] | str:
    """The load client's measured window, once it said WARMED: "go", then its DONE.
    The CPU seconds each of ``counted`` spent meanwhile, or what it said instead."""
    before = {p.name: proc_cpu(p) for p in counted}
    assert popen.stdin is not None
    popen.stdin.write(b"go\n")
    popen.stdin.flush()
    line = reader.line(deadline)
    after = {p.name: proc_cpu(p) for p in counted}
    if line != "DONE":
        return f"{line!r}"
    return {name: after[name] - before[name] for name in before}


def run_scenario(
    scenario: Scenario,
    connections: int,
    watched: Sequence[Proc],
    env: dict[str, str],
    window: Window | None = None,
) -> Result:
    result = Result(scenario)
    result_file = Path(tempfile.mkdtemp(prefix="tether-loadgen-")) / "result.json"
    argv = [
        sys.executable, "-m", "bench.loadgen", "--handshake",
        "--url", scenario.url,
        "--rate", str(scenario.rate),
        "--duration", str(scenario.duration),
        "--warmup", str(scenario.warmup),
        "--warmup-rate", str(scenario.warmup_rate),
        "--connections", str(connections),
        "--body-size", str(BODY_SIZE),
        "--result-file", str(result_file),
    ]  # fmt: skip
    budget = scenario.warmup + scenario.duration + 60.0
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO)
    loadgen = Proc("loadgen", popen, Path(os.devnull))
    try:
        reader = LineReader(popen)
        deadline = time.monotonic() + budget
        line = reader.line(deadline)
        if line != "WARMED":
            result.problem = f"load generator did not warm up: {line!r}"
            return result
        if window is not None:
            window.begin()
        try:
            cpu = measured_window(popen, reader, deadline, [*watched, loadgen])
        finally:
            if window is not None:
                window.end()
        if isinstance(cpu, str):
            result.problem = f"load generator did not finish: {cpu}"
            return result
        line = reader.line(deadline)
        data: dict[str, Any] = (
            json.loads(result_file.read_text()) if line == "RESULT" and result_file.exists() else {}
        )
        if "fatal" in data or not data:
            result.problem = f"load generator failed: {data.get('fatal', 'no result')}"
            return result
        result.completed = int(data["completed"])
        result.errors = int(data["errors"])
        result.queued = int(data["queued"])
        result.elapsed = float(data["elapsed"])
        result.status = data["status"]
        result.error_samples = data["error_samples"]
        result.latency_ms = percentiles_ms(data["latencies"])
        result.service_ms = percentiles_ms(data["service"])
        result.lag_ms = percentiles_ms(data["lag"])
        requests = max(1, result.completed + result.errors)
        result.cpu_us = {name: spent / requests * 1e6 for name, spent in cpu.items()}
        return result
    finally:
        stop(loadgen)
        shutil.rmtree(result_file.parent, ignore_errors=True)
