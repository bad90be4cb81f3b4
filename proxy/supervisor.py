"""``tether sidecar --workers N`` (N > 1): N worker processes (``proxy.worker``), each
a whole sidecar with its own connections, sharing the HTTP API and internal ports
with SO_REUSEPORT, so that a busy sidecar uses more than one core. The kernel spreads
new connections over the workers.

This process, the supervisor, checks the ports first (``worker_ports``; it chooses the
internal port when none is given), serves the metrics port itself with the sum of
the workers' metrics (``worker_metrics``), logs one "ready" line once every worker
is ready, and:

- SIGTERM/SIGINT: every worker drains (within ``--dapr-graceful-shutdown-seconds``);
  the supervisor exits 0 once all have exited;
- ``POST /v1.0/shutdown`` on any worker, or a worker ending on its own with status 0:
  the same, for all of them;
- a worker that dies otherwise is started again, after 0.5 s doubling to 30 s while
  it keeps dying young;
- a worker that cannot start at first (bad certificates, a port taken meanwhile):
  the others are stopped and the supervisor exits 1 with the worker's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from dataclasses import replace

from proxy import worker_channel
from proxy.config.settings import SidecarSettings, WorkerRole
from proxy.core.errors import TetherError
from proxy.edge.http_server import HttpServer
from proxy.ready_signal import announce_ready
from proxy.worker_ports import claim_ports

log = logging.getLogger("tether.supervisor")

FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
# A worker that served this long before dying is restarted after the first delay again.
STABLE_SECONDS = 30.0
# Beyond the drain time, how long a stopping worker may take before it is killed.
KILL_MARGIN = 5.0


class SupervisorError(TetherError):
    """The workers could not start (the message is the first worker's, or the port check's)."""


def restart_delay(consecutive_deaths: int) -> float:
    """Seconds before starting a worker again after its ``consecutive_deaths``-th death."""
    exponent = max(consecutive_deaths - 1, 0)
    return min(FIRST_RESTART_DELAY * 2.0 ** min(exponent, 16), MAX_RESTART_DELAY)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    def __init__(self, settings: SidecarSettings) -> None:
        self._settings = settings
        self._registration_id = secrets.token_hex(16)
        self._stopping = asyncio.Event()
        self._all_ready = asyncio.Event()
        self._started = False  # every worker has been ready once
        self._failure: str | None = None
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._ready: dict[int, int] = {}  # worker index -> its private metrics port
        self._killer: asyncio.TimerHandle | None = None

    def worker_settings(self, index: int) -> SidecarSettings:
        return replace(
            self._settings,
            reuse_port=True,
            worker=WorkerRole(index, self._registration_id, os.getpid()),
            # Private: the supervisor serves the real metrics port with the sum.
            metrics_listen_address="127.0.0.1",
            metrics_port=0,
        )

    def metrics_ports(self) -> dict[int, int]:
        return dict(self._ready)

    async def run(self) -> int:
        s = self._settings = claim_ports(self._settings)
        if s.app_max_concurrency > 0:
            log.warning(
                "--app-max-concurrency %d applies to each of the %d workers: the app may get "
                "up to %d calls at once",
                s.app_max_concurrency,
                s.workers,
                s.app_max_concurrency * s.workers,
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, f"received {sig.name}")
        metrics: HttpServer | None = None
        if s.metrics_enabled:
            from proxy.worker_metrics import merged_metrics_server

            metrics = merged_metrics_server(self.metrics_ports)
            try:
                await metrics.listen([s.metrics_listen_address], s.metrics_port)
            except OSError as exc:
                raise SupervisorError(
                    f"cannot listen on metrics port {s.metrics_port}: {exc.strerror or exc}"
                    " (choose one with --metrics-port, or --enable-metrics=false)"
                ) from exc
        slots = [asyncio.create_task(self._slot(i)) for i in range(s.workers)]
        ready = asyncio.create_task(self._all_ready.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([ready, stopping], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stopping.cancel()
        if self._all_ready.is_set() and not self._stopping.is_set():
            self._started = True
            log.info(
                "tether sidecar %s ready: %d workers (pids %s), HTTP API on %s:%d, "
                "internal gRPC on %s:%d (mTLS %s)%s",
                s.app_id,
                s.workers,
                ",".join(str(p.pid) for _, p in sorted(self._processes.items())),
                ",".join(s.listen_addresses),
                s.http_port,
                s.internal_listen_address,
                s.internal_grpc_port,
                "on" if s.enable_mtls else "off",
                f", gRPC API on port {s.grpc_port}" if s.grpc_port is not None else "",
            )
            announce_ready()
        try:
            await asyncio.gather(*slots)
        finally:
            if self._killer is not None:
                self._killer.cancel()
            if metrics is not None:
                await metrics.stop(0)
        if self._failure is not None:
            raise SupervisorError(self._failure)
        return 0

    def stop(self, reason: str) -> None:
        """Drain every worker; the supervisor exits once all have exited."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("shutting down: %s", reason)
        for process in self._processes.values():
            _signal(process, signal.SIGTERM)
        grace = self._settings.graceful_shutdown_seconds + KILL_MARGIN
        self._killer = asyncio.get_running_loop().call_later(grace, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for index, process in self._processes.items():
            if process.returncode is None:
                log.warning(
                    "worker %d (pid %d) did not drain in time; killing it", index, process.pid
                )
                _signal(process, signal.SIGKILL)

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
        self.stop("a worker could not start")

    async def _slot(self, index: int) -> None:
        """Keep worker ``index`` running until the sidecar stops."""
        loop = asyncio.get_running_loop()
        deaths = 0
        while not self._stopping.is_set():
            began = loop.time()
            try:
                code, was_ready, error = await self._run_worker(index)
            except OSError as exc:  # no process could be made (fork or exec failed)
                self._fail(f"cannot start worker {index}: {exc.strerror or exc}")
                return
            if self._stopping.is_set():
                return
            if code == 0:
                self.stop(f"worker {index} stopped")
                return
            if not self._started:
                self._fail(error or f"worker {index} {describe_exit(code)} before it was ready")
                return
            deaths = 1 if was_ready and loop.time() - began >= STABLE_SECONDS else deaths + 1
            delay = restart_delay(deaths)
            log.error(
                "worker %d %s%s; starting it again in %.1fs",
                index,
                describe_exit(code),
                f": {error}" if error else "",
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_worker(self, index: int) -> tuple[int, bool, str | None]:
        """Start worker ``index`` and follow it until it exits: (status, was it ready,
        the error it reported)."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy.worker",
                str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._processes[index] = process
        if self._stopping.is_set():  # stopped while it was being started
            _signal(process, signal.SIGTERM)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(worker_channel.encode_settings(self.worker_settings(index)))
        was_ready, error = False, None
        try:
            async for line in reader:
                try:
                    message = worker_channel.parse_message(line)
                except ValueError:
                    continue
                kind = message["kind"]
                if kind == worker_channel.READY:
                    was_ready = True
                    self._worker_ready(index, process.pid, int(str(message["metrics_port"])))
                elif kind == worker_channel.ERROR:
                    error = str(message["error"])
                elif kind == worker_channel.SHUTDOWN:
                    self.stop(f"worker {index} was asked to shut down (POST /v1.0/shutdown)")
        except (ConnectionError, ValueError):
            pass  # the worker died mid-line; its exit status says the rest
        finally:
            writer.close()
            code = await process.wait()
            self._ready.pop(index, None)
            self._processes.pop(index, None)
        return code, was_ready, error

    def _worker_ready(self, index: int, pid: int, metrics_port: int) -> None:
        self._ready[index] = metrics_port
        where = f", its own metrics on 127.0.0.1:{metrics_port}" if metrics_port else ""
        log.info("worker %d ready: pid %d%s", index, pid, where)
        if len(self._ready) == self._settings.workers:
            self._all_ready.set()


def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


async def run_supervisor(settings: SidecarSettings) -> int:
    return await Supervisor(settings).run()
