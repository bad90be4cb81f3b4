"""Starts real tether sidecars and real apps as the README tells a user to,
each with its own handle, and stops every one of them (also on failure)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.ports import free_port

APPS = Path(__file__).resolve().parent / "apps"
READY_TIMEOUT = 30.0
# How long a test waits for something that should happen soon; never asserted.
WAIT_TIMEOUT = 15.0
_POLL = 0.05

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = WAIT_TIMEOUT) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail
    with ``what`` once ``timeout`` has passed. An ``OSError`` counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except OSError:
            pass  # not listening yet, or the connection was refused
        else:
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(_POLL)


def tether_command() -> list[str]:
    found = shutil.which("tether")
    return [found] if found else [sys.executable, "-m", "proxy"]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


@dataclass
class App:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def received(self) -> list[dict[str, object]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@dataclass
class Sidecar:
    app_id: str
    http_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    grpc_port: int = 0  # the Dapr gRPC API (--dapr-grpc-port)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def metrics_text(self) -> str:
        """One scrape of its metrics port (as the harness gives it, --metrics-port)."""
        args = self.process.args
        assert isinstance(args, list)
        port = int(args[args.index("--metrics-port") + 1])
        return request(port, "GET", "/metrics").body.decode()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        pairs = [(k.lower(), v) for k, v in response.getheaders()]
        return Response(response.status, dict(pairs), pairs, data)
    finally:
        connection.close()


@dataclass
class Cluster:
    """Everything one test starts, under one temporary HOME (registry, certs)."""

    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HOME": str(self.home)}
        self.env.pop("DAPR_API_TOKEN", None)
        self.env.pop("APP_API_TOKEN", None)

    def tether(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*tether_command(), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def certs_init(self, directory: Path | None = None) -> Path:
        target = directory or self.home / ".tether" / "certs"
        result = self.tether("certs", "init", "--dir", str(target))
        assert result.returncode == 0, result.stderr
        return target

    def client_results(
        self, argv: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None
    ) -> list[dict[str, object]]:
        """Run a client that prints a JSON list of its results, and return them; the test
        fails with its stderr when it fails, and it is killed if it outlasts ``timeout``."""
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.processes.append(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            problem = f"{argv[1]} did not finish within {timeout:.0f}s: {stderr!r}"
            raise AssertionError(problem) from None
        assert process.returncode == 0, stderr.decode(errors="replace")
        results = json.loads(stdout)
        assert isinstance(results, list)
        return results

    def app(self, name: str = "app", script: str = "echo_app.py") -> App:
        port = free_port()
        log_path = self.root / f"{name}-{port}.jsonl"
        process = subprocess.Popen([sys.executable, str(APPS / script), str(port), str(log_path)])
        self.processes.append(process)
        wait_for_port(port, process)
        return App(port, log_path, process)

    def sidecar(
        self,
        app_id: str,
        app: App | None = None,
        *,
        mtls: bool = True,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Sidecar:
        http_port = free_port()
        args = [
            *tether_command(),
            "sidecar",
            "--app-id",
            app_id,
            "--dapr-http-port",
            str(http_port),
            f"--enable-mtls={'true' if mtls else 'false'}",
            *extra,
        ]
        if app is not None:
            args += ["--app-port", str(app.port)]
        grpc_port = 0
        if not any(a.startswith("--dapr-grpc-port") for a in extra):
            # daprd's default 50001 would collide between sidecars, as 9090 would.
            grpc_port = free_port()
            args += ["--dapr-grpc-port", str(grpc_port)]
        if not any(a.startswith(("--metrics-port", "--enable-metrics")) for a in extra):
            # daprd's default 9090 would collide between sidecars; tests bind loopback only.
            args += ["--metrics-port", str(free_port())]
        if not any(a.startswith("--metrics-listen-address") for a in extra):
            args += ["--metrics-listen-address", "127.0.0.1"]
        log_path = self.root / f"sidecar-{app_id}-{http_port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        sidecar = Sidecar(app_id, http_port, process, log_path, grpc_port)
        if wait:
            self.wait_ready(sidecar)
        return sidecar

    def wait_ready(self, sidecar: Sidecar) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if sidecar.process.poll() is not None:
                raise RuntimeError(f"sidecar {sidecar.app_id} exited early:\n{sidecar.log()}")
            try:
                if request(sidecar.http_port, "GET", "/v1.0/healthz", timeout=2).status == 204:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"sidecar {sidecar.app_id} not ready:\n{sidecar.log()}")

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self.stop(process)
