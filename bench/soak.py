"""The soak: ``python -m bench.soak [--duration 600] [--rate 500]``.

POSTs with a unique id each go at a steady rate through a caller sidecar
(``checkout``) to two instances of one app (``orders``: two sidecars, two apps, the
embedded SQLite registry, mTLS), while one callee sidecar is SIGKILLed and restarted
every 30 s (the two in turn) and a Resiliency file in the caller's
``--resources-path`` is rewritten every minute (valid, alternating policies that keep
Dapr's built-in retries in force). At the end it prints the calls made and failed, the
failures beyond what the retry contract allows (see ``bench/soak_check``), executions
seen by the apps against successful calls, POST ids executed more than once, the
caller's RSS and open fds at start and end, the caller's event-loop lag p99 (from
``tether_event_loop_lag_seconds``), and PASS or FAIL (exit status 0 or 1).

Every process it starts is stopped when it ends, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.ports import free_port
from bench.soak_check import Kill, Verdict, executions, histogram_quantile, judge, read_calls

FD_SLACK = 16  # "flat": at most this many more open fds at the end ...
RSS_SLACK_MB = 32.0  # ... and at most this much more RSS
WARM_TIMEOUT = 30.0

POLICIES = (
    # Both keep the built-in retries in force for orders (no named target for it).
    "timeouts: {DefaultTimeoutPolicy: 30s}\n"
    "    retries:\n"
    "      DaprBuiltInServiceRetries: {policy: constant, duration: 1s, maxRetries: 3}\n"
    "      careful: {policy: constant, duration: 100ms, maxRetries: 2}\n",
    "timeouts: {DefaultTimeoutPolicy: 20s}\n"
    "    retries:\n"
    "      DaprBuiltInServiceRetries: {policy: constant, duration: 250ms, maxRetries: 8}\n"
    "      careful: {policy: exponential, maxInterval: 2s, maxRetries: 3}\n",
)


def resiliency_yaml(turn: int) -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n"
        f"metadata: {{name: soak}}\nspec:\n  policies:\n    {POLICIES[turn % 2]}"
        "  targets:\n    apps:\n      inventory: {retry: careful}\n"
    )


@dataclass
class Options:
    duration: float = 600.0
    rate: float = 500.0
    kill_every: float = 30.0
    rewrite_every: float = 60.0
    app_delay_ms: float = 20.0
    connections: int = 256
    workdir: Path | None = None


@dataclass
class Report:
    options: Options
    verdict: Verdict = field(default_factory=Verdict)
    kills: list[Kill] = field(default_factory=list)
    restarts: int = 0
    rewrites: int = 0
    loads: float = math.nan  # dapr_resiliency_loaded on the caller at the end
    rss_mb: tuple[float, float] = (math.nan, math.nan)
    fds: tuple[int, int] = (0, 0)
    lag_p50: float = math.nan
    lag_p99: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def flat(self) -> bool:
        return (
            self.fds[1] - self.fds[0] <= FD_SLACK
            and self.rss_mb[1] - self.rss_mb[0] <= RSS_SLACK_MB
        )

    @property
    def passed(self) -> bool:
        return self.verdict.passed and not self.problems and self.flat


class Fleet:
    """Every process of one soak, each startable again, all stopped by ``stop_all``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        self.env = {**os.environ, "HOME": str(home)}
        for name in ("DAPR_API_TOKEN", "APP_API_TOKEN"):
            self.env.pop(name, None)
        self.started: list[procs.Proc] = []
        self._count = 0

    def start(self, name: str, argv: Sequence[str]) -> procs.Proc:
        self._count += 1
        proc = procs.start(f"{name}-{self._count}", argv, self.env, self.logs)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            procs.stop(proc)


def _sidecar_argv(app_id: str, http_port: int, *extra: str) -> list[str]:
    return [
        *procs.tether_command(),
        "sidecar",
        "--app-id",
        app_id,
        "--dapr-http-port",
        str(http_port),
        # daprd's default 50001 would collide between the sidecars of one machine.
        "--dapr-grpc-port",
        str(free_port()),
        "--enable-mtls=true",
        *extra,
    ]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="POST" if "/invoke/" in url else "GET")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status), response.read()


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _write_policy(path: Path, turn: int) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(resiliency_yaml(turn))
    os.replace(temporary, path)  # a reload never sees half a file


def run_soak(options: Options, say: Callable[[str], None] = print) -> Report:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tether-soak-"))
    options = Options(**{**options.__dict__, "workdir": workdir})
    report = Report(options)
    fleet = Fleet(workdir)
    try:
        _soak(options, fleet, report, say)
    finally:
        fleet.stop_all()
    return report


def _soak(options: Options, fleet: Fleet, report: Report, say: Callable[[str], None]) -> None:
    workdir = fleet.workdir
    certs = subprocess.run(
        [*procs.tether_command(), "certs", "init", "--dir", str(workdir / "home/.tether/certs")],
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if certs.returncode != 0:
        report.problems.append(f"tether certs init failed: {certs.stderr.strip()}")
        return
    resources = workdir / "resources"
    resources.mkdir(exist_ok=True)
    policy_file = resources / "resiliency.yaml"
    _write_policy(policy_file, 0)
    app_logs = [workdir / f"orders-app-{i}.log" for i in range(2)]
    app_ports = [free_port() for _ in range(2)]
    http_ports = [free_port() for _ in range(2)]
    grpc_ports = [free_port() for _ in range(2)]
    for i in range(2):
        app = fleet.start(
            f"orders-app-{i}",
            [sys.executable, "-m", "bench.soak_app", str(app_ports[i]), str(app_logs[i]),
             str(options.app_delay_ms)],
        )  # fmt: skip
        problem = procs.wait_listening(app_ports[i], app)
        if problem:
            report.problems.append(problem)
            return

    def callee_argv(i: int) -> list[str]:
        return _sidecar_argv(
            "orders", http_ports[i], "--app-port", str(app_ports[i]),
            "--dapr-internal-grpc-port", str(grpc_ports[i]), "--enable-metrics=false",
        )  # fmt: skip

    callees = [fleet.start(f"orders-sidecar-{i}", callee_argv(i)) for i in range(2)]
    caller_port, metrics_port = free_port(), free_port()
    caller = fleet.start(
        "checkout-sidecar",
        _sidecar_argv(
            "checkout", caller_port, "--resources-path", str(resources),
            "--metrics-port", str(metrics_port), "--metrics-listen-address", "127.0.0.1",
        ),
    )  # fmt: skip
    problem = procs.wait_healthy([*callees, caller], [*http_ports, caller_port])
    if problem:
        report.problems.append(problem)
        return
    if not _warm(caller_port, app_logs):
        report.problems.append(f"both instances did not answer within {WARM_TIMEOUT:.0f} s")
        return
    report.rss_mb = (procs.memory_mb(caller.pid)[0], math.nan)
    report.fds = (_fds(caller.pid), 0)
    calls_file = workdir / "calls.jsonl"
    prefix = f"soak{os.getpid()}"
    load = fleet.start(
        "load",
        [sys.executable, "-m", "bench.soak_load", "--port", str(caller_port),
         "--rate", str(options.rate), "--duration", str(options.duration),
         "--connections", str(options.connections), "--prefix", prefix,
         "--out", str(calls_file)],
    )  # fmt: skip
    say(
        f"soak: {options.duration:.0f} s at {options.rate:.0f} calls/s; logs in {workdir}",
    )
    t0 = time.monotonic()
    end = t0 + options.duration
    next_kill, next_rewrite = t0 + options.kill_every, t0 + options.rewrite_every
    while load.alive() and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_kill:
            victim = len(report.kills) % 2
            started, reaped = _kill(callees[victim])
            callees[victim] = fleet.start(f"orders-sidecar-{victim}", callee_argv(victim))
            problem = procs.wait_healthy([callees[victim]], [http_ports[victim]])
            report.kills.append(Kill(victim, started, reaped, time.monotonic()))
            if problem:
                report.problems.append(f"restart: {problem}")
                return
            report.restarts += 1
            next_kill += options.kill_every
        elif now >= next_rewrite:
            report.rewrites += 1
            _write_policy(policy_file, report.rewrites)
            next_rewrite += options.rewrite_every
        else:
            time.sleep(max(0.0, min(next_kill, next_rewrite, end) - now))
    try:
        load.popen.wait(options.duration + 300)
    except subprocess.TimeoutExpired:
        report.problems.append("the load generator did not finish")
        return
    if load.popen.returncode != 0:
        report.problems.append(f"the load generator failed: {load.log_tail()}")
        return
    report.rss_mb = (report.rss_mb[0], procs.memory_mb(caller.pid)[0])
    report.fds = (report.fds[0], _fds(caller.pid))
    if not caller.alive():
        report.problems.append("the caller sidecar died")
    _read_metrics(metrics_port, report)
    with calls_file.open() as lines:
        calls = read_calls(lines)
    logs = [path.read_text().splitlines() if path.exists() else [] for path in app_logs]
    report.verdict = judge(calls, report.kills, executions(logs, prefix))
    kills = [kill.__dict__ for kill in report.kills]
    (workdir / "kills.json").write_text(json.dumps(kills, indent=1))


def _warm(caller_port: int, app_logs: Sequence[Path]) -> bool:
    """Calls until both instances have answered one (bounded)."""
    deadline = time.monotonic() + WARM_TIMEOUT
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            _get(f"http://127.0.0.1:{caller_port}/v1.0/invoke/orders/method/warm/{n}")
        except OSError:
            time.sleep(0.2)
        if all(path.exists() and path.stat().st_size for path in app_logs):
            return True
    return False


def _kill(proc: procs.Proc) -> tuple[float, float]:
    """SIGKILL and reap; when each happened."""
    start = time.monotonic()
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(30)
    return start, time.monotonic()


def _read_metrics(port: int, report: Report) -> None:
    try:
        _, body = _get(f"http://127.0.0.1:{port}/metrics")
    except OSError as exc:
        report.problems.append(f"caller metrics: {exc}")
        return
    text = body.decode()
    (report.options.workdir or Path(".")).joinpath("caller-metrics.txt").write_text(text)
    report.lag_p50 = histogram_quantile(0.5, text, "tether_event_loop_lag_seconds")
    report.lag_p99 = histogram_quantile(0.99, text, "tether_event_loop_lag_seconds")
    report.loads = sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("dapr_resiliency_loaded{")
    )


def render(report: Report) -> str:
    o, v = report.options, report.verdict
    rows = [
        f"tether soak: {o.duration:.0f} s at {o.rate:.0f} calls/s to 2 instances of orders; "
        f"a callee sidecar SIGKILLed and restarted every {o.kill_every:.0f} s, "
        f"the Resiliency file rewritten every {o.rewrite_every:.0f} s",
        f"calls made                              {v.calls}",
        f"  succeeded                             {v.succeeded}",
        f"  failed                                {v.failed}",
        f"  failed, allowed by the retry contract {v.allowed} (Dapr's error, pending on an "
        "instance when it was killed)",
        f"    of which sent on its connection after it died, before the caller noticed: "
        f"{v.allowed_after_death}",
        f"    e.g. {v.allowed_sample or '-'}",
        f"  failed beyond the retry contract      {len(v.beyond)}",
        f"executions seen by the apps             {v.executions} (successful calls "
        f"{v.succeeded} + failed calls the killed instance's app ran {v.executed_failed})",
        f"  POST ids executed more than once      {len(v.duplicates)}",
        f"  successful calls never executed       {len(v.lost)}",
        f"callee sidecar kills / restarts         {len(report.kills)} / {report.restarts}",
        f"Resiliency rewrites / loads (caller)    {report.rewrites} / {report.loads:.0f}",
        f"caller RSS start -> end                 {report.rss_mb[0]:.1f} -> "
        f"{report.rss_mb[1]:.1f} MB",
        f"caller open fds start -> end            {report.fds[0]} -> {report.fds[1]}",
        f"caller event-loop lag p99 (p50)         {report.lag_p99 * 1000:.1f} ms "
        f"({report.lag_p50 * 1000:.1f} ms)",
    ]
    rows += [f"beyond the contract: {call}" for call in v.beyond[:10]]
    rows += [f"executed more than once: {call_id}" for call_id in v.duplicates[:10]]
    rows += [f"succeeded, never executed: {call_id}" for call_id in v.lost[:10]]
    rows += [f"problem: {problem}" for problem in report.problems]
    rows.append("PASS" if report.passed else "FAIL")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    defaults = Options()
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="calls per second")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every)
    parser.add_argument("--rewrite-every", type=float, default=defaults.rewrite_every)
    parser.add_argument("--app-delay-ms", type=float, default=defaults.app_delay_ms)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir")
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        rate=args.rate,
        kill_every=args.kill_every,
        rewrite_every=args.rewrite_every,
        app_delay_ms=args.app_delay_ms,
        workdir=args.workdir,
    )
    report = run_soak(options)
    print(render(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
