"""Direct app calls versus calls through a pair of tether sidecars.

``python -m bench.invoke_bench`` starts, all on 127.0.0.1 and under a throw-away
HOME (so ``~/.tether`` holds only this run's registry and certificates):

* ``bench.fast_app`` as the orders app,
* ``tether sidecar --app-id orders --app-port APP --enable-mtls``,
* ``tether sidecar --app-id checkout --enable-mtls``,

then drives ``bench.loadgen`` (its own process) four times: direct and through
the sidecars (``POST /v1.0/invoke/orders/method/bench`` on checkout's HTTP
port), each at a fixed rate and at saturation. It prints latency percentiles,
the latency the sidecars add, throughput, errors, CPU per request of each
sidecar from ``/proc/<pid>/stat`` sampled around exactly the measured window,
and each sidecar's resident memory; then a PASS/MISS line per target. Targets are
reported, never asserted: the exit code is 0 whenever the measurements ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import percentile

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PERCENTILES = (50.0, 90.0, 99.0)
TARGET_ADDED_P90_MS = 2.0
TARGET_CPU_US = 300.0
TARGET_RSS_MB = 80.0
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
BODY_SIZE = 1024


# -- processes ------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    pid: int = 0  # the process whose CPU and memory are measured (py-spy's child if profiled)

    def __post_init__(self) -> None:
        if not self.pid:
            self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, argv: Sequence[str], env: dict[str, str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # a Ctrl-C at the terminal reaches only us
        )
    return Proc(name, popen, log)


def stop(proc: Proc) -> None:
    """SIGTERM, wait, SIGKILL. Under py-spy the sidecar itself is signalled first: py-spy
    writes its profile when its program exits, and does not pass SIGTERM on."""
    if proc.popen.poll() is not None:
        return
    profiled = proc.pid != proc.popen.pid
    with contextlib.suppress(ProcessLookupError):
        if profiled:
            os.kill(proc.pid, signal.SIGTERM)
        else:
            proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(STOP_TIMEOUT * (2 if profiled else 1))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if profiled:
                os.kill(proc.pid, signal.SIGKILL)
            proc.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(STOP_TIMEOUT)


def tether_command() -> list[str]:
    """The ``tether`` console script, preferring the one beside this interpreter
    (a pyenv shim would work too, but costs a shell and a second start-up)."""
    beside = Path(sys.executable).parent / "tether"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("tether")
    if found:
        return [found]
    return [sys.executable, "-m", "proxy"]


def child_pid(pid: int, deadline: float) -> int:
    """The first child of ``pid`` (the profiled program under py-spy), else ``pid``."""
    while time.monotonic() < deadline:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                if children:
                    return int(children[0])
        except OSError:
            return pid
        time.sleep(0.05)
    return pid


def wait_healthy(procs: Sequence[Proc], ports: Sequence[int]) -> str | None:
    """Waits for ``GET /v1.0/healthz`` -> 204 on every port; returns a problem or None."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = dict(zip(ports, procs, strict=True))
    while pending and time.monotonic() < deadline:
        for port, proc in list(pending.items()):
            if not proc.alive():
                return f"{proc.name} exited with {proc.popen.returncode}"
            try:
                url = f"http://127.0.0.1:{port}/v1.0/healthz"
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 204:
                        del pending[port]
            except (urllib.error.URLError, OSError):
                pass
        if pending:
            time.sleep(0.1)
    if pending:
        names = ", ".join(p.name for p in pending.values())
        return f"no 204 from /v1.0/healthz within {STARTUP_TIMEOUT:.0f} s: {names}"
    return None


def wait_listening(port: int, proc: Proc) -> str | None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            return f"{proc.name} exited with {proc.popen.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return None
        time.sleep(0.05)
    return f"{proc.name} is not listening on {port}"


# -- /proc accounting -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds (NaN if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 ("state")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB (NaN if unknown)."""
    values = {"VmRSS": math.nan, "VmHWM": math.nan}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return values["VmRSS"], values["VmHWM"]


# -- load generator ---------------------------------------------------------------------


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


@dataclass
class Scenario:
    name: str
    target: str  # "direct" or "sidecar"
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


def _percentiles(values: list[float]) -> dict[str, float]:
    values.sort()
    return {f"p{p:g}": percentile(values, p) * 1e3 for p in PERCENTILES}


def run_scenario(
    scenario: Scenario, connections: int, watched: Sequence[Proc], env: dict[str, str]
) -> Result:
    result = Result(scenario)
    argv = [
        sys.executable, "-m", "bench.loadgen", "--handshake",
        "--url", scenario.url,
        "--rate", str(scenario.rate),
        "--duration", str(scenario.duration),
        "--warmup", str(scenario.warmup),
        "--warmup-rate", str(scenario.warmup_rate),
        "--connections", str(connections),
        "--body-size", str(BODY_SIZE),
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
        pids = {p.name: p.pid for p in [*watched, loadgen]}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        assert popen.stdin is not None
        popen.stdin.write(b"go\n")
        popen.stdin.flush()
        line = reader.line(deadline)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if line != "DONE":
            result.problem = f"load generator did not finish: {line!r}"
            return result
        line = reader.line(deadline)
        data: dict[str, Any] = json.loads(line) if line else {}
        if "fatal" in data or not data:
            result.problem = f"load generator failed: {data.get('fatal', 'no result')}"
            return result
        result.completed = int(data["completed"])
        result.errors = int(data["errors"])
        result.queued = int(data["queued"])
        result.elapsed = float(data["elapsed"])
        result.status = data["status"]
        result.error_samples = data["error_samples"]
        result.latency_ms = _percentiles(data["latencies"])
        result.service_ms = _percentiles(data["service"])
        result.lag_ms = _percentiles(data["lag"])
        requests = max(1, result.completed + result.errors)
        result.cpu_us = {name: (after[name] - before[name]) / requests * 1e6 for name in pids}
        return result
    finally:
        stop(loadgen)


# -- report ------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:8.3f}" if not math.isnan(value) else "     n/a"


def print_pair(title: str, direct: Result, sidecar: Result, sidecar_names: Sequence[str]) -> None:
    print(f"\n== {title} ==")
    for r in (direct, sidecar):
        if r.problem:
            print(f"  {r.scenario.target}: FAILED: {r.problem}")
    print(f"  {'':18}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'req/s':>10}{'errors':>8}"
          f"{'queued':>8}")  # fmt: skip
    for label, r in (("direct", direct), ("sidecar", sidecar)):
        lat = r.latency_ms
        print(
            f"  {label:18}{_ms(lat.get('p50', math.nan))} {_ms(lat.get('p90', math.nan))} "
            f"{_ms(lat.get('p99', math.nan))}{r.throughput:10.1f}{r.errors:8d}{r.queued:8d}"
        )
    added = added_ms(direct, sidecar)
    print(f"  {'added by sidecars':18}{_ms(added['p50'])} {_ms(added['p90'])} {_ms(added['p99'])}")
    for label, r in (("direct", direct), ("sidecar", sidecar)):
        s, g = r.service_ms, r.lag_ms
        if s:
            print(
                f"  {label} service time (from write) p50/p90/p99 ms: "
                f"{s['p50']:.3f} / {s['p90']:.3f} / {s['p99']:.3f}; "
                f"send lag p50/p99 ms: {g['p50']:.3f} / {g['p99']:.3f}"
            )
        if r.errors:
            print(f"  {label} errors, e.g.: {'; '.join(r.error_samples)} (status {r.status})")
    if sidecar.cpu_us:
        parts = [f"{n} {sidecar.cpu_us[n]:.0f}" for n in sidecar_names]
        parts += [f"{n} {sidecar.cpu_us[n]:.0f}" for n in ("app", "loadgen")]
        print(f"  CPU µs per request (sidecar run): {', '.join(parts)}")
    if direct.cpu_us:
        parts = [f"{n} {direct.cpu_us[n]:.0f}" for n in ("app", "loadgen")]
        print(f"  CPU µs per request (direct run): {', '.join(parts)}")


def added_ms(direct: Result, sidecar: Result) -> dict[str, float]:
    return {
        key: sidecar.latency_ms.get(key, math.nan) - direct.latency_ms.get(key, math.nan)
        for key in ("p50", "p90", "p99")
    }


def print_memory(sidecars: Sequence[Proc]) -> dict[str, tuple[float, float]]:
    memory = {p.name: memory_mb(p.pid) for p in sidecars}
    print("\n== sidecar memory ==")
    for name, (rss, hwm) in memory.items():
        print(f"  {name:18} RSS {rss:6.1f} MB   peak RSS (VmHWM) {hwm:6.1f} MB")
    return memory


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.invoke_bench",
        description="Direct calls versus calls through a tether sidecar pair.",
    )
    add = parser.add_argument
    add("--duration", type=float, default=20.0, help="fixed-rate measured seconds (20)")
    add("--warmup", type=float, default=3.0, help="warm-up seconds before each run (3)")
    add("--warmup-rate", type=float, default=100.0, help="warm-up requests/s (100)")
    add("--rate", type=float, default=1000.0, help="fixed rate, requests/s (1000)")
    add("--saturation-duration", type=float, default=10.0, help="closed-loop seconds (10)")
    add("--connections", type=int, default=16, help="keep-alive connections (16)")
    add("--no-mtls", action="store_true", help="run the sidecars with --enable-mtls=false")
    add(
        "--sidecar-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag for both sidecars, e.g. --sidecar-arg=--log-level=warn (repeatable)",
    )
    add("--profile", action="store_true", help="run the sidecars under py-spy record")
    add("--json", type=Path, default=None, metavar="FILE", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.saturation_duration <= 0:
        parser.error("--rate, --duration and --saturation-duration must be > 0")
    if args.connections < 1:
        parser.error("--connections must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as home_dir:
        home = Path(home_dir)
        try:
            return _bench(args, home, procs)
        finally:
            for proc in reversed(procs):
                stop(proc)


def _bench(args: argparse.Namespace, home: Path, procs: list[Proc]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_"))}
    env.pop("NAMESPACE", None)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    logdir = home / "logs"
    logdir.mkdir()
    tether = tether_command()
    mtls = not args.no_mtls

    print(
        f"tether invoke benchmark: {os.cpu_count()} CPUs, mTLS {'on' if mtls else 'off'}, "
        f"{BODY_SIZE} B POST bodies, {args.connections} connections"
    )
    print(f"tether command: {' '.join(tether)}")

    done = subprocess.run(
        [*tether, "certs", "init"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        print(f"tether certs init failed ({done.returncode}): {done.stderr.strip()}")
        return 1

    app_port, orders_port, checkout_port = free_port(), free_port(), free_port()
    app = start("app", [sys.executable, "-m", "bench.fast_app", str(app_port)], env, logdir)
    procs.append(app)
    problem = wait_listening(app_port, app)
    if problem:
        print(f"fast app did not start: {problem}\n{app.log_tail()}")
        return 1

    profiler: list[str] = []
    if args.profile:
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            print("--profile: py-spy is missing (pip install py-spy); running without it")
        else:
            profiler = [py_spy, "record", "--rate", "200", "--format", "raw"]
    mtls_flag = "--enable-mtls" if mtls else "--enable-mtls=false"
    common = [mtls_flag, "--dapr-internal-grpc-listen-address", "127.0.0.1",
              "--metrics-listen-address", "127.0.0.1", *args.sidecar_arg]  # fmt: skip
    if not any(a.startswith(("--metrics-port", "--enable-metrics")) for a in args.sidecar_arg):
        common.append("--enable-metrics=false")  # measure the bare hop unless asked
    sidecar_argv = {
        "orders": [*tether, "sidecar", "--app-id", "orders", "--app-port", str(app_port),
                   "--dapr-http-port", str(orders_port), "--metrics-port", str(free_port()),
                   *common],
        "checkout": [*tether, "sidecar", "--app-id", "checkout",
                     "--dapr-http-port", str(checkout_port), "--metrics-port", str(free_port()),
                     *common],
    }  # fmt: skip
    profiles: dict[str, Path] = {}
    sidecars: list[Proc] = []
    for name, argv in sidecar_argv.items():
        if profiler:
            profiles[name] = Path.cwd() / f"profile-{name}.folded.txt"
            argv = [*profiler, "-o", str(profiles[name]), "--", *argv]
        proc = start(name, argv, env, logdir)
        procs.append(proc)
        sidecars.append(proc)
    problem = wait_healthy(sidecars, [orders_port, checkout_port])
    if problem:
        print(f"sidecars did not become healthy: {problem}")
        for proc in sidecars:
            print(f"--- {proc.name} log (last lines) ---\n{proc.log_tail()}")
        return 1
    if profiler:
        deadline = time.monotonic() + 5.0
        for proc in sidecars:
            proc.pid = child_pid(proc.popen.pid, deadline)
    for proc in sidecars:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ")
            print(f"{proc.name} sidecar: pid {proc.pid}: {cmdline.decode(errors='replace')}")

    direct_url = f"http://127.0.0.1:{app_port}/bench"
    sidecar_url = f"http://127.0.0.1:{checkout_port}/v1.0/invoke/orders/method/bench"
    fixed = dict(
        rate=args.rate, duration=args.duration, warmup=args.warmup, warmup_rate=args.warmup_rate
    )
    saturated = dict(
        rate=0.0,
        duration=args.saturation_duration,
        warmup=min(args.warmup, 1.0),
        warmup_rate=args.warmup_rate,
    )
    scenarios = [
        Scenario("fixed", "direct", direct_url, **fixed),
        Scenario("fixed", "sidecar", sidecar_url, **fixed),
        Scenario("saturation", "direct", direct_url, **saturated),
        Scenario("saturation", "sidecar", sidecar_url, **saturated),
    ]
    watched = [*sidecars, app]
    results: dict[tuple[str, str], Result] = {}
    for scenario in scenarios:
        if not all(p.alive() for p in watched):
            dead = [p for p in watched if not p.alive()]
            results[(scenario.name, scenario.target)] = Result(
                scenario, problem=f"{dead[0].name} exited with {dead[0].popen.returncode}"
            )
            continue
        results[(scenario.name, scenario.target)] = run_scenario(
            scenario, args.connections, watched, env
        )

    names = [p.name for p in sidecars]
    fixed_d, fixed_s = results[("fixed", "direct")], results[("fixed", "sidecar")]
    sat_d, sat_s = results[("saturation", "direct")], results[("saturation", "sidecar")]
    print_pair(
        f"fixed rate: {args.rate:g} req/s for {args.duration:g} s "
        f"(after {args.warmup:g} s at {args.warmup_rate:g} req/s)",
        fixed_d,
        fixed_s,
        names,
    )
    print_pair(
        f"saturation: closed loop, {args.connections} connections, {args.saturation_duration:g} s",
        sat_d,
        sat_s,
        names,
    )
    memory = print_memory(sidecars)
    for proc in sidecars:
        if not proc.alive():
            print(f"  {proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")

    added_p90 = added_ms(fixed_d, fixed_s)["p90"]
    print("\n== targets ==")
    print(
        f"  {verdict(added_p90 <= TARGET_ADDED_P90_MS)}  added p90 at {args.rate:g} req/s: "
        f"{added_p90:.3f} ms (target <= {TARGET_ADDED_P90_MS:g} ms)"
    )
    for name in names:
        cpu = fixed_s.cpu_us.get(name, math.nan)
        print(
            f"  {verdict(cpu <= TARGET_CPU_US)}  CPU per request, {name} sidecar at "
            f"{args.rate:g} req/s: {cpu:.0f} µs (target <= {TARGET_CPU_US:g} µs; "
            f"at saturation {sat_s.cpu_us.get(name, math.nan):.0f} µs)"
        )
    for name, (rss, hwm) in memory.items():
        print(
            f"  {verdict(hwm < TARGET_RSS_MB)}  peak RSS, {name} sidecar: {hwm:.1f} MB "
            f"(now {rss:.1f} MB; target < {TARGET_RSS_MB:g} MB)"
        )
    if profiles:
        for proc in sidecars:  # py-spy writes its file when the program exits
            stop(proc)
        print("\nprofiles: " + ", ".join(str(p) for p in profiles.values() if p.exists()))

    if args.json is not None:
        payload = {
            "mtls": mtls,
            "connections": args.connections,
            "rate": args.rate,
            "scenarios": [
                {
                    "name": r.scenario.name,
                    "target": r.scenario.target,
                    "throughput": r.throughput,
                    "completed": r.completed,
                    "errors": r.errors,
                    "queued": r.queued,
                    "latency_ms": r.latency_ms,
                    "service_ms": r.service_ms,
                    "lag_ms": r.lag_ms,
                    "cpu_us_per_request": r.cpu_us,
                    "problem": r.problem,
                }
                for r in results.values()
            ],
            "added_ms": {"fixed": added_ms(fixed_d, fixed_s), "saturation": added_ms(sat_d, sat_s)},
            "memory_mb": {n: {"rss": m[0], "peak": m[1]} for n, m in memory.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
