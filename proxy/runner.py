"""``tether run``: a sidecar and the app beside it, started and stopped together.

The sidecar starts first (as ``tether sidecar`` in a child process) and the
app only once the sidecar says it is ready (``proxy.ready_signal``; with
``--workers``, once every worker is), with ``DAPR_HTTP_PORT``,
``DAPR_GRPC_PORT`` (the Dapr gRPC API's port: ``--dapr-grpc-port``, else a free one,
as ``dapr run`` chooses) and ``APP_ID`` set.
SIGINT/SIGTERM go to both; when the app exits the sidecar is drained, and when
the sidecar dies the app is stopped.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from types import FrameType

from proxy.config.settings import SidecarSettings
from proxy.core.errors import TetherError
from proxy.ready_signal import ReadyPipe

_READY_TIMEOUT = 30.0
_POLL = 0.05


def ensure_local_ca(settings: SidecarSettings) -> None:
    """Create the development CA on first use, as ``tether certs init`` would."""
    directory = settings.certs_dir
    if (directory / "issuer.key").exists():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Two `tether run` started together must not both create a CA.
    with open(directory / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "issuer.key").exists():
            return
        # Only here: this supervisor lives as long as the app, cryptography need not.
        from certs.authority import create_authority, write_authority

        files = create_authority(settings.trust_domain, datetime.now(UTC))
        write_authority(directory, files)
    print(f"tether: created a local CA in {directory}", file=sys.stderr)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], grace: float) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def run_with_app(sidecar_flags: list[str], command: list[str], settings: SidecarSettings) -> int:
    if not command:
        raise TetherError("no app command: use 'tether run [flags] -- CMD ARGS...'")
    if settings.enable_mtls and settings.sentry is None:
        ensure_local_ca(settings)
    flags = [f for f in sidecar_flags if not f.startswith("--enable-mtls")]
    flags.append(f"--enable-mtls={'true' if settings.enable_mtls else 'false'}")
    if settings.metrics_enabled and not any(f.startswith("--metrics-port") for f in flags):
        # Like `dapr run`: several apps on one machine must not all want 9090.
        flags.append(f"--metrics-port={_free_port(settings.metrics_listen_address)}")
    grpc_port = settings.grpc_port
    if not any(f.startswith("--dapr-grpc-port") for f in flags):
        # Several `tether run` on one machine must not all want daprd's 50001.
        grpc_port = _free_port(settings.listen_addresses[0])
        flags.append(f"--dapr-grpc-port={grpc_port}")
    if not any(f.startswith("--metrics-listen-address") for f in flags):
        flags.append(f"--metrics-listen-address={settings.metrics_listen_address}")
    ready = ReadyPipe()
    try:
        sidecar = subprocess.Popen(
            [sys.executable, "-m", "proxy", "sidecar", *flags],
            env=ready.child_env(dict(os.environ)),
            pass_fds=(ready.write_fd,),
        )
    finally:
        ready.started()
    grace = settings.graceful_shutdown_seconds + 2
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    app: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + _READY_TIMEOUT
        while not (said := ready.wait(_POLL)):
            if said is False or sidecar.poll() is not None:
                # Closing the pipe without a word means it is exiting.
                raise TetherError(f"the sidecar exited with status {_stop(sidecar, grace)}")
            if received or time.monotonic() > deadline:
                _stop(sidecar, grace)
                if received:
                    return 130
                raise TetherError(f"the sidecar was not ready within {_READY_TIMEOUT:.0f}s")
        env = dict(os.environ)
        env.update(DAPR_HTTP_PORT=str(settings.http_port), APP_ID=settings.app_id)
        env["DAPR_GRPC_PORT"] = str(grpc_port)
        if settings.app_port is not None:
            env["APP_PORT"] = str(settings.app_port)
        try:
            app = subprocess.Popen(command, env=env)
        except OSError as exc:
            _stop(sidecar, grace)
            raise TetherError(f"cannot start {command[0]}: {exc.strerror or exc}") from exc
        while True:
            if received:
                sig = received.pop()
                app.send_signal(sig)
                sidecar.send_signal(sig)
            if app.poll() is not None:
                _stop(sidecar, grace)
                return app.returncode if app.returncode >= 0 else 128 - app.returncode
            if sidecar.poll() is not None:
                print(
                    f"tether: the sidecar exited with status {sidecar.returncode}", file=sys.stderr
                )
                _stop(app, grace)
                return 1
            time.sleep(_POLL)
    finally:
        ready.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if app is not None and app.poll() is None:
            _stop(app, grace)
        if sidecar.poll() is None:
            _stop(sidecar, grace)
