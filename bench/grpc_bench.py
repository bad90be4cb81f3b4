"""Unary gRPC calls (1 KB) direct to an app versus through a pair of tether sidecars.

``python -m bench.grpc_bench`` starts, all on 127.0.0.1 and under a throw-away HOME
(``~/.tether`` holds only this run's registry and certificates):

* ``bench.grpc_app``, a grpcio server echoing any method's raw bytes, and
  ``bench.fast_app``, the HTTP app of ``bench.invoke_bench``;
* per run, fresh sidecars with mTLS: ``greeter`` (``--app-protocol grpc --app-port``
  the grpcio app), ``orders`` (``--app-port`` the HTTP app) and ``checkout`` (no app);

then drives ``bench.grpc_load`` (its own process, grpc.aio, one channel) at a fixed
rate against:

* (a) the grpcio app directly: the reference;
* (b) gRPC proxying: ``checkout``'s ``--dapr-grpc-port`` with metadata
  ``dapr-app-id: greeter``, an arbitrary method path with raw bytes, relayed to
  ``greeter`` and its app;
* (c) the Dapr gRPC API: ``InvokeService`` on ``checkout`` to ``orders`` and its HTTP app;

and, unless ``--no-http``, ``bench.loadgen`` against the HTTP app directly and through
the Dapr HTTP API of the same pair, for comparison. Per target it prints latency
percentiles, the latency the pair adds against its direct reference, CPU µs per call
of each sidecar (from ``/proc``, sampled around exactly the measured window) and each
sidecar's RSS; ``--runs N`` repeats with fresh sidecars and prints medians and spread.
CPU per call is everything the sidecar spent in the window divided by the calls, so at
low rates its idle work (timers, wake-ups) weighs in.
A target that cannot be measured (a tether without gRPC proxying or gRPC apps refuses
``--app-protocol grpc``) is reported "not available" with the reason. Nothing is
asserted: the exit code is 0 whenever the measurements ran.
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
from pathlib import Path

from bench import grpc_report
from bench.grpc_report import CALLER, GRPC_CALLEE, HTTP_CALLEE
from bench.measure import LineReader, measured_window, percentiles_ms, run_scenario
from bench.ports import free_port
from bench.procs import (
    REPO,
    Proc,
    proc_memory,
    start,
    stop,
    tether_command,
    wait_healthy,
    wait_listening,
)
from bench.report import Result, Scenario, summarise

METHOD = "/bench.Echo/Unary"  # any path: the app and a proxying pair never decode it
HTTP_CONNECTIONS = 16


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grpc_bench",
        description="Unary gRPC calls direct to an app versus through a tether sidecar pair.",
    )
    add = parser.add_argument
    add("--rate", type=float, default=500.0, help="fixed rate, calls/s (500)")
    add("--duration", type=float, default=10.0, help="measured seconds per target (10)")
    add("--warmup", type=float, default=2.0, help="warm-up seconds at the same rate (2)")
    add("--body-size", type=int, default=1024, help="request payload bytes (1024)")
    add("--runs", type=int, default=1, help="repeat with fresh sidecars; print medians (1)")
    add("--no-http", action="store_true", help="leave out the HTTP API comparison")
    add("--no-mtls", action="store_true", help="sidecars with --enable-mtls=false")
    add("--sidecar-arg", action="append", default=[], metavar="ARG",
        help="extra flag for every sidecar, e.g. --sidecar-arg=--log-level=warn")  # fmt: skip
    add("--tether-src", type=Path, default=None, metavar="DIR",
        help="run the sidecars with the proxy package of this checkout")  # fmt: skip
    add("--json", type=Path, default=None, metavar="FILE", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rate and --duration must be > 0, --warmup >= 0")
    if args.runs < 1 or args.body_size < 0:
        parser.error("--runs must be >= 1 and --body-size >= 0")
    return args


class GrpcBench:
    """What every run shares: arguments, environment, the apps, and the process list
    from which ``main`` stops whatever is still running, also after a failure."""

    def __init__(self, args: argparse.Namespace, home: Path, procs: list[Proc]) -> None:
        self.args = args
        self.procs = procs
        self.logdir = home / "logs"
        self.tether = tether_command()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_"))}
        env.pop("NAMESPACE", None)
        env["HOME"] = str(home)
        first = [str(args.tether_src.resolve())] if args.tether_src else []
        paths = [*first, str(REPO), *env.get("PYTHONPATH", "").split(os.pathsep)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))
        self.env = env
        self.grpc_app_port, self.http_app_port = free_port(), free_port()
        self.apps: list[Proc] = []

    def start_apps(self) -> str | None:
        for name, module, port in (
            ("grpc-app", "bench.grpc_app", self.grpc_app_port),
            ("http-app", "bench.fast_app", self.http_app_port),
        ):
            app = start(name, [sys.executable, "-m", module, str(port)], self.env, self.logdir)
            self.procs.append(app)
            self.apps.append(app)
            problem = wait_listening(port, app)
            if problem:
                return f"{problem}\n{app.log_tail()}"
        return None

    def start_sidecars(self, run: int) -> tuple[dict[str, Proc], dict[str, int], dict[str, str]]:
        """The sidecars that became healthy, each one's ports, and why any did not."""
        mtls = "--enable-mtls=false" if self.args.no_mtls else "--enable-mtls"
        common = [mtls, "--dapr-internal-grpc-listen-address", "127.0.0.1",
                  "--metrics-listen-address", "127.0.0.1", *self.args.sidecar_arg]  # fmt: skip
        if not any(a.startswith(("--metrics-port", "--enable-metrics")) for a in common):
            common.append("--enable-metrics=false")  # the bare hop, as invoke_bench
        apps = {
            GRPC_CALLEE: ["--app-port", str(self.grpc_app_port), "--app-protocol", "grpc"],
            HTTP_CALLEE: ["--app-port", str(self.http_app_port)],
            CALLER: [],
        }
        started: dict[str, Proc] = {}
        ports: dict[str, int] = {}
        problems: dict[str, str] = {}
        for name, app in apps.items():
            http, grpc = free_port(), free_port()
            argv = [*self.tether, "sidecar", "--app-id", name, "--dapr-http-port", str(http),
                    "--dapr-grpc-port", str(grpc), "--metrics-port", str(free_port()),
                    *app, *common]  # fmt: skip
            proc = start(f"{name}-run{run}", argv, self.env, self.logdir)
            proc.name = name  # CPU and memory are reported by app ID
            self.procs.append(proc)
            problem = wait_healthy([proc], [http])
            if problem:
                problems[name] = f"{' '.join(app) or 'sidecar'}: {_last_line(proc)}"
                self.stop([proc])
                continue
            started[name] = proc
            ports[f"{name}.http"], ports[f"{name}.grpc"] = http, grpc
        return started, ports, problems

    def stop(self, procs: Sequence[Proc]) -> None:
        for proc in procs:
            stop(proc)
            if proc in self.procs:
                self.procs.remove(proc)

    def grpc_target(self, key: str, client: list[str], watched: Sequence[Proc]) -> Result:
        """One target measured with ``bench.grpc_load``; CPU sampled around its window."""
        args = self.args
        result = Result(Scenario("fixed", key, " ".join(client), args.rate, args.duration,
                                 args.warmup, args.rate))  # fmt: skip
        workdir = Path(tempfile.mkdtemp(prefix="tether-grpc-load-"))
        argv = [sys.executable, "-m", "bench.grpc_load", *client,
                "--rate", str(args.rate), "--duration", str(args.duration),
                "--warmup", str(args.warmup), "--body-size", str(args.body_size),
                "--result-file", str(workdir / "result.json")]  # fmt: skip
        popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, cwd=REPO
        )
        loadgen = Proc("client", popen, Path(os.devnull))
        try:
            reader = LineReader(popen)
            deadline = time.monotonic() + args.warmup + args.duration + 60.0
            line = reader.line(deadline)
            if line is not None and line.startswith("FAILED "):
                result.problem = f"the first call failed: {line.removeprefix('FAILED ')}"
                return result
            if line != "WARMED":
                result.problem = f"the load client said {line!r} (exit code {popen.poll()})"
                return result
            cpu = measured_window(popen, reader, deadline, [*watched, loadgen])
            if isinstance(cpu, str):
                result.problem = f"the load client did not finish: {cpu}"
                return result
            if reader.line(deadline) != "RESULT":
                result.problem = "the load client gave no result"
                return result
            data = json.loads((workdir / "result.json").read_text())
            result.completed, result.errors = int(data["completed"]), int(data["errors"])
            result.elapsed = float(data["elapsed"])
            result.status, result.error_samples = data["status"], data["error_samples"]
            result.latency_ms = percentiles_ms(data["latencies"])
            calls = max(1, result.completed + result.errors)
            result.cpu_us = {name: spent / calls * 1e6 for name, spent in cpu.items()}
            return result
        finally:
            stop(loadgen)
            shutil.rmtree(workdir, ignore_errors=True)

    def one_run(self, run: int) -> tuple[dict[str, Result], dict[str, tuple[float, float]]]:
        args = self.args
        sidecars, ports, problems = self.start_sidecars(run)
        try:
            watched = [*sidecars.values(), *self.apps]
            results: dict[str, Result] = {}

            def unavailable(key: str, why: str) -> None:
                scenario = Scenario("fixed", key, "", args.rate, args.duration, 0.0, 0.0)
                results[key] = Result(scenario, problem=why)

            def needs(key: str, *names: str) -> bool:
                missing = [n for n in names if n not in sidecars]
                for name in missing:
                    unavailable(key, f"the {name} sidecar did not start ({problems[name]})")
                return not missing

            direct = ["--target", f"127.0.0.1:{self.grpc_app_port}", "--method", METHOD]
            results["direct"] = self.grpc_target("direct", direct, watched)
            if needs("proxy", CALLER, GRPC_CALLEE):
                proxy = ["--target", f"127.0.0.1:{ports[CALLER + '.grpc']}",
                         "--method", METHOD, "--app-id", GRPC_CALLEE]  # fmt: skip
                results["proxy"] = self.grpc_target("proxy", proxy, watched)
            if needs("invoke", CALLER, HTTP_CALLEE):
                invoke = ["--target", f"127.0.0.1:{ports[CALLER + '.grpc']}",
                          "--mode", "invoke", "--app-id", HTTP_CALLEE]  # fmt: skip
                results["invoke"] = self.grpc_target("invoke", invoke, watched)
            if not args.no_http:
                caller_http = ports.get(CALLER + ".http")
                urls = {
                    "direct_http": f"http://127.0.0.1:{self.http_app_port}/bench",
                    "http_api": f"http://127.0.0.1:{caller_http}/v1.0/invoke/orders/method/bench",
                }
                for key, url in urls.items():
                    if key == "http_api" and not needs(key, CALLER, HTTP_CALLEE):
                        continue
                    scenario = Scenario("fixed", key, url, args.rate, args.duration,
                                        args.warmup, args.rate)  # fmt: skip
                    results[key] = run_scenario(scenario, HTTP_CONNECTIONS, watched, self.env)
            memory = {name: proc_memory(proc) for name, proc in sidecars.items() if proc.alive()}
            for proc in sidecars.values():
                if not proc.alive():
                    print(f"  {proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
            return results, memory
        finally:
            self.stop(list(sidecars.values()))


def _last_line(proc: Proc) -> str:
    """The sidecar's own words for why it stopped: its last non-empty log line."""
    lines = [line for line in proc.log_tail(40).splitlines() if line.strip()]
    status = f"exited with {proc.popen.returncode}" if not proc.alive() else "not healthy"
    return f"{status}: {lines[-1].strip()}" if lines else status


def _bench(args: argparse.Namespace, home: Path, procs: list[Proc]) -> int:
    bench = GrpcBench(args, home, procs)
    bench.logdir.mkdir()
    print(
        f"tether gRPC benchmark: {os.cpu_count()} CPUs, mTLS {'off' if args.no_mtls else 'on'}, "
        f"unary calls with {args.body_size} B payloads at {args.rate:g} calls/s for "
        f"{args.duration:g} s per target (after {args.warmup:g} s warm-up), {args.runs} run(s)"
    )
    print(f"tether command: {' '.join(bench.tether)}; PYTHONPATH={bench.env['PYTHONPATH']}")
    done = subprocess.run([*bench.tether, "certs", "init"], env=bench.env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if done.returncode != 0:
        print(f"tether certs init failed ({done.returncode}): {done.stderr.strip()}")
        return 1
    problem = bench.start_apps()
    if problem:
        print(f"an app did not start: {problem}")
        return 1
    per_run: list[dict[str, float]] = []
    problems: dict[str, str] = {}
    for number in range(1, args.runs + 1):
        print(f"\n== run {number} of {args.runs} ==", flush=True)
        results, memory = bench.one_run(number)
        print("\n".join(grpc_report.run_lines(results, memory)), flush=True)
        problems.update({key: r.problem for key, r in results.items() if r.problem})
        per_run.append(grpc_report.figures(results, memory))
    summary = summarise(per_run)
    print()
    sidecars = (CALLER, GRPC_CALLEE, HTTP_CALLEE)
    print("\n".join(grpc_report.summary_lines(summary, args.runs, problems, sidecars)))
    if args.json is not None:
        payload = {"rate": args.rate, "body_size": args.body_size, "runs": per_run,
                   "problems": problems}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="tether-grpc-bench-") as home_dir:
        try:
            return _bench(args, Path(home_dir), procs)
        finally:
            for proc in reversed(procs):
                stop(proc)


if __name__ == "__main__":
    sys.exit(main())
