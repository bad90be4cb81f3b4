"""Direct app calls versus calls through a pair of tether sidecars, a pair of nginx and
the thinnest Python proxy pair.

``python -m bench.invoke_bench`` starts, all on 127.0.0.1 and under a throw-away
HOME (so ``~/.tether`` holds only this run's registry and certificates):

* ``bench.fast_app`` as the orders app,
* ``tether sidecar --app-id orders --app-port APP --enable-mtls`` (the callee),
* ``tether sidecar --app-id checkout --enable-mtls`` (the caller),
* the reference pair (``bench.nginx_pair``): nginx A -> TLS with a client certificate
  -> nginx B -> app, one worker each; skipped, with a note, when nginx is not installed,
* the Python floor pair (``bench.floor_proxy``; ``--no-floor`` leaves it out): the same
  hop on uvloop, ``ssl`` and llhttp with nothing else, to show what any Python proxy
  of this design pays,

then drives ``bench.loadgen`` (its own process) against each target (direct, tether,
nginx, floor) at a fixed rate and at saturation. Per run it prints latency percentiles, the
latency each pair adds, throughput, errors, CPU per request of each proxy from
``/proc/<pid>/stat`` sampled around exactly the measured window, and each proxy's
resident memory. ``--runs N`` repeats the whole run with fresh proxies, then prints
the median and spread (min-max) of every figure, the ratios tether / nginx, and a
PASS/MISS line per target of issue 12. Targets are reported, never asserted: the exit
code is 0 whenever the measurements ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench import report
from bench.floor_proxy import start_pair as start_floor_pair
from bench.measure import BODY_SIZE, run_scenario
from bench.nginx_pair import find_nginx, start_pair, write_certs
from bench.perf_split import PerfRecording, find_perf
from bench.ports import free_port
from bench.procs import (
    REPO,
    Proc,
    child_pid,
    children,
    cpu_seconds,
    proc_memory,
    start,
    stop,
    tether_command,
    wait_healthy,
    wait_listening,
)
from bench.profile_summary import summary_lines as profile_lines
from bench.report import Result, Run, Scenario

CALLER, CALLEE = "checkout", "orders"


def command_line(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return "?"


def wait_workers(proc: Proc, workers: int) -> str | None:
    """Waits for the supervisor's "ready: N workers" line, then records the workers'
    pids as the sidecar's own; returns a problem or None."""
    deadline = time.monotonic() + 30.0
    while f"ready: {workers} workers" not in proc.log_tail(200):
        if not proc.alive() or time.monotonic() > deadline:
            return f"{proc.name}: its {workers} workers were not ready"
        time.sleep(0.05)
    proc.extra_pids = children(proc.popen.pid)
    if len(proc.extra_pids) != workers:
        return f"{proc.name}: {len(proc.extra_pids)} child processes, expected {workers}"
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.invoke_bench",
        description="Direct calls versus calls through a tether sidecar pair, an nginx pair "
        "and the thinnest Python proxy pair.",
    )
    add = parser.add_argument
    add("--duration", type=float, default=20.0, help="fixed-rate measured seconds (20)")
    add("--warmup", type=float, default=3.0, help="warm-up seconds before each run (3)")
    add("--warmup-rate", type=float, default=100.0, help="warm-up requests/s (100)")
    add("--rate", type=float, default=1000.0, help="fixed rate, requests/s (1000)")
    add("--saturation-duration", type=float, default=10.0, help="closed-loop seconds (10)")
    add("--connections", type=int, default=16, help="keep-alive connections (16)")
    add("--runs", type=int, default=1, help="repeat with fresh proxies; print medians (1)")
    add("--no-nginx", action="store_true", help="leave the nginx pair out")
    add("--no-floor", action="store_true",
        help="leave out the Python floor pair (bench.floor_proxy)")  # fmt: skip
    add("--no-mtls", action="store_true", help="sidecars with --enable-mtls=false, nginx plain")
    add(
        "--sidecar-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag for both sidecars, e.g. --sidecar-arg=--log-level=warn (repeatable)",
    )
    add("--workers", type=int, default=1,
        help="--workers of both tether sidecars (1, the default: no supervisor)")  # fmt: skip
    add("--profile", action="store_true", help="run the sidecars under py-spy record")
    add("--perf", action="store_true",
        help="record the tether and floor proxies with Linux perf over the saturation "
        "window and print where their CPU goes by native library (perf's sampling adds "
        "a little to the CPU figures of that window)")  # fmt: skip
    add("--json", type=Path, default=None, metavar="FILE", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.saturation_duration <= 0:
        parser.error("--rate, --duration and --saturation-duration must be > 0")
    if args.connections < 1:
        parser.error("--connections must be >= 1")
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.profile and args.workers > 1:
        parser.error("--profile with --workers > 1 would profile the supervisor only")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    procs: list[Proc] = []
    with (
        tempfile.TemporaryDirectory(prefix="tether-bench-") as home_dir,
        tempfile.TemporaryDirectory(prefix="tether-bench-nginx-") as nginx_dir,
    ):
        try:
            return _bench(args, Path(home_dir), Path(nginx_dir), procs)
        finally:
            for proc in reversed(procs):
                stop(proc)


class Bench:
    """What every run shares: arguments, environment, the app, and the process list
    from which ``main`` stops whatever is still running, also after a failure."""

    def __init__(
        self, args: argparse.Namespace, home: Path, nginx_root: Path, procs: list[Proc]
    ) -> None:
        self.args = args
        self.home = home
        self.nginx_root = nginx_root
        self.procs = procs
        self.mtls = not args.no_mtls
        self.tether = tether_command()
        self.logdir = home / "logs"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_"))}
        env.pop("NAMESPACE", None)
        env["HOME"] = str(home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        self.env = env
        self.app_port = free_port()
        self.nginx: str | None = None
        self.profiler: list[str] = []
        self.profiles: list[Path] = []
        self.perf: str | None = None  # perf's path when --perf

    def stop_all(self, started: Sequence[Proc]) -> None:
        for proc in started:
            stop(proc)
            if proc in self.procs:
                self.procs.remove(proc)

    def start_sidecars(self, run: int) -> tuple[list[Proc], str] | str:
        """The two sidecars and the invoke URL on the caller, or a problem."""
        args = self.args
        orders_port, checkout_port = free_port(), free_port()
        mtls_flag = "--enable-mtls" if self.mtls else "--enable-mtls=false"
        common = [mtls_flag, "--dapr-internal-grpc-listen-address", "127.0.0.1",
                  "--metrics-listen-address", "127.0.0.1", "--workers", str(args.workers),
                  *args.sidecar_arg]  # fmt: skip
        if not any(a.startswith(("--metrics-port", "--enable-metrics")) for a in args.sidecar_arg):
            common.append("--enable-metrics=false")  # measure the bare hop unless asked
        sidecar_argv = {
            CALLEE: [*self.tether, "sidecar", "--app-id", CALLEE, "--app-port", str(self.app_port),
                     "--dapr-http-port", str(orders_port), "--metrics-port", str(free_port()),
                     "--dapr-grpc-port", str(free_port()), *common],
            CALLER: [*self.tether, "sidecar", "--app-id", CALLER,
                     "--dapr-http-port", str(checkout_port), "--metrics-port", str(free_port()),
                     "--dapr-grpc-port", str(free_port()), *common],
        }  # fmt: skip
        sidecars: list[Proc] = []
        for name, argv in sidecar_argv.items():
            if self.profiler:
                suffix = f"-run{run}" if args.runs > 1 else ""
                profile = Path.cwd() / f"profile-{name}{suffix}.folded.txt"
                self.profiles.append(profile)
                argv = [*self.profiler, "-o", str(profile), "--", *argv]
            proc = start(name, argv, self.env, self.logdir)
            self.procs.append(proc)
            sidecars.append(proc)
        problem = wait_healthy(sidecars, [orders_port, checkout_port])
        if problem:
            logs = "".join(f"\n--- {p.name} log (last lines) ---\n{p.log_tail()}" for p in sidecars)
            return f"sidecars did not become healthy: {problem}{logs}"
        if args.workers > 1:
            # The shared port answers once one worker is up; measure once all are, and
            # charge every worker's CPU and memory to its sidecar beside the supervisor's.
            for proc in sidecars:
                problem = wait_workers(proc, args.workers)
                if problem:
                    return f"{problem}\n{proc.log_tail()}"
        if self.profiler:
            deadline = time.monotonic() + 5.0
            for proc in sidecars:
                proc.pid = child_pid(proc.popen.pid, deadline)
        return sidecars, f"http://127.0.0.1:{checkout_port}/v1.0/invoke/orders/method/bench"

    def one_run(self, run: int, app: Proc) -> Run | str:
        args = self.args
        started_sidecars = self.start_sidecars(run)
        if isinstance(started_sidecars, str):
            return started_sidecars
        sidecars, sidecar_url = started_sidecars
        started = list(sidecars)
        try:
            if run == 1:
                for proc in sidecars:
                    print(f"{proc.name} sidecar: pid {proc.pid}: {command_line(proc.pid)}")
                    if proc.extra_pids:
                        print(f"  its workers: pids {', '.join(map(str, proc.extra_pids))}")
            urls = {
                "direct": f"http://127.0.0.1:{self.app_port}/bench",
                "tether": sidecar_url,
            }
            proxies = {("tether", "caller"): CALLER, ("tether", "callee"): CALLEE}
            if self.nginx is not None:
                ports = (free_port(), free_port())
                pair = start_pair(
                    self.nginx, self.home / ".tether" / "certs", self.nginx_root / f"run{run}",
                    ports, self.app_port, self.mtls, self.env, self.logdir, self.procs,
                )  # fmt: skip
                started += [p for p in self.procs if p.name.startswith("nginx-")]
                if isinstance(pair, str):
                    return f"the nginx pair did not start: {pair}"
                urls["nginx"] = f"http://127.0.0.1:{ports[0]}/bench"
                proxies[("nginx", "caller")], proxies[("nginx", "callee")] = "nginx-a", "nginx-b"
            if not args.no_floor:
                floor_ports = (free_port(), free_port())
                floor_certs = None
                if self.mtls:
                    certs_dir, tls_dir = self.home / ".tether" / "certs", self.home / f"floor{run}"
                    floor_certs = (
                        write_certs(certs_dir, tls_dir, "floor-a", "floor-b"),
                        write_certs(certs_dir, tls_dir, "floor-b", "floor-a"),
                    )
                problem = start_floor_pair(
                    floor_certs, floor_ports, self.app_port, self.env, self.logdir, self.procs
                )
                started += [p for p in self.procs if p.name.startswith("floor-")]
                if problem:
                    return f"the Python floor pair did not start: {problem}"
                urls["floor"] = f"http://127.0.0.1:{floor_ports[0]}/bench"
                proxies[("floor", "caller")], proxies[("floor", "callee")] = "floor-a", "floor-b"
            watched = [*started, app]
            results: dict[tuple[str, str], Result] = {}
            for scenario in self.scenarios(urls):
                key = (scenario.name, scenario.target)
                dead = [p for p in watched if not p.alive()]
                if dead:
                    problem = f"{dead[0].name} exited with {dead[0].popen.returncode}"
                    results[key] = Result(scenario, problem=problem)
                    continue
                recording = self.perf_recording(scenario, proxies, started)
                results[key] = run_scenario(
                    scenario, args.connections, watched, self.env, recording
                )
                if recording is not None:
                    print(f"perf, {scenario.target} pair at saturation, share of samples:")
                    print("\n".join(recording.report_lines()), flush=True)
            by_name = {p.name: p for p in started}
            memory = {key: proc_memory(by_name[name]) for key, name in proxies.items()}
            for proc in started:
                if not proc.alive():
                    print(f"  {proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
                elif proc.extra_pids:
                    # How the kernel spread the work (connections, not requests).
                    shares = ", ".join(f"{cpu_seconds(pid):.1f}" for pid in proc.pids)
                    print(f"  {proc.name}: CPU s of supervisor, workers since start: {shares}")
            return Run(results, proxies, memory)
        finally:
            self.stop_all(started)  # py-spy writes its profile when the sidecar exits

    def perf_recording(
        self,
        scenario: Scenario,
        proxies: dict[tuple[str, str], str],
        started: Sequence[Proc],
    ) -> PerfRecording | None:
        """With --perf: a recording of the tether or floor pair's saturation window."""
        if self.perf is None or scenario.name != "saturation":
            return None
        if scenario.target not in ("tether", "floor"):
            return None
        by_name = {p.name: p for p in started}
        targets = {
            name: by_name[name].pids
            for (pair, _), name in proxies.items()
            if pair == scenario.target and name in by_name
        }
        return PerfRecording(self.perf, self.logdir, targets)

    def scenarios(self, urls: dict[str, str]) -> list[Scenario]:
        args = self.args
        fixed = dict(
            rate=args.rate, duration=args.duration, warmup=args.warmup, warmup_rate=args.warmup_rate
        )
        saturated = dict(
            rate=0.0,
            duration=args.saturation_duration,
            warmup=min(args.warmup, 1.0),
            warmup_rate=args.warmup_rate,
        )
        return [
            *(Scenario("fixed", target, url, **fixed) for target, url in urls.items()),
            *(Scenario("saturation", target, url, **saturated) for target, url in urls.items()),
        ]

    def titles(self) -> dict[str, str]:
        args = self.args
        return {
            "fixed": f"fixed rate: {args.rate:g} req/s for {args.duration:g} s "
            f"(after {args.warmup:g} s at {args.warmup_rate:g} req/s)",
            "saturation": f"saturation: closed loop, {args.connections} connections, "
            f"{args.saturation_duration:g} s",
        }


def _bench(args: argparse.Namespace, home: Path, nginx_root: Path, procs: list[Proc]) -> int:
    bench = Bench(args, home, nginx_root, procs)
    bench.logdir.mkdir()
    print(
        f"tether invoke benchmark: {os.cpu_count()} CPUs, mTLS {'on' if bench.mtls else 'off'}, "
        f"{BODY_SIZE} B POST bodies, {args.connections} connections, {args.runs} run(s), "
        f"{args.workers} worker(s) per tether sidecar"
    )
    print(f"tether command: {' '.join(bench.tether)}")
    if not args.no_nginx:
        bench.nginx = find_nginx()
        if bench.nginx is None:
            print(
                "nginx: NOT FOUND, so the nginx pair is SKIPPED and no ratio to nginx is "
                "printed (install it: apt-get install -y nginx-light)"
            )
        else:
            version = subprocess.run([bench.nginx, "-v"], capture_output=True, text=True).stderr
            between = "TLS with client certificates" if bench.mtls else "plain HTTP"
            print(f"nginx pair: {bench.nginx} ({version.strip()}), one worker each, {between}")

    done = subprocess.run(
        [*bench.tether, "certs", "init"],
        env=bench.env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        print(f"tether certs init failed ({done.returncode}): {done.stderr.strip()}")
        return 1

    argv = [sys.executable, "-m", "bench.fast_app", str(bench.app_port)]
    app = start("app", argv, bench.env, bench.logdir)
    procs.append(app)
    problem = wait_listening(bench.app_port, app)
    if problem:
        print(f"fast app did not start: {problem}\n{app.log_tail()}")
        return 1

    if args.profile:
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            print("--profile: py-spy is missing (pip install py-spy); running without it")
        else:
            bench.profiler = [py_spy, "record", "--rate", "200", "--format", "raw"]

    if args.perf:
        bench.perf = find_perf()
        if bench.perf is None:
            print("--perf: perf is missing (apt-get install -y linux-perf); running without it")

    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        print(f"\n== run {number} of {args.runs} ==", flush=True)
        run = bench.one_run(number, app)
        if isinstance(run, str):
            print(run)
            return 1
        runs.append(run)
        print("\n".join(report.run_lines(run, bench.titles())), flush=True)

    per_run = [report.figures(run) for run in runs]
    summary = report.summarise(per_run)
    print()
    print("\n".join(report.summary_lines(summary, len(runs))))
    print()
    print("\n".join(report.verdict_lines(report.targets(summary, args.rate))))
    for profile in bench.profiles:
        if profile.exists():
            print(f"\nprofile {profile}:")
            print("\n".join(profile_lines(profile, top=15)))

    if args.json is not None:
        payload = {
            "mtls": bench.mtls,
            "connections": args.connections,
            "rate": args.rate,
            "runs": per_run,
            "summary": {key: asdict(spread) for key, spread in summary.items()},
            "results": [
                [{"name": n, "target": t, "throughput": r.throughput, **asdict(r)}
                 for (n, t), r in run.results.items()]
                for run in runs
            ],
        }  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
