"""The tether command as a user types it: run, certs init, and clear errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import APPS, Cluster, free_port, request, tether_command, wait_until


def _start_run(
    cluster: Cluster,
    app_id: str,
    http_port: int,
    app_port: int,
    log: str,
    metrics_flags: tuple[str, ...] = ("--metrics-listen-address", "127.0.0.1"),
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *tether_command(),
            "run",
            "--app-id",
            app_id,
            "--app-port",
            str(app_port),
            "--dapr-http-port",
            str(http_port),
            *metrics_flags,
            "--",
            sys.executable,
            str(APPS / "echo_app.py"),
            str(app_port),
            str(cluster.root / log),
        ],
        env=cluster.env,
    )
    cluster.processes.append(process)
    return process


def test_run_starts_both_and_exits_cleanly_with_its_app(cluster: Cluster) -> None:
    orders_http, orders_app = free_port(), free_port()
    checkout_http, checkout_app = free_port(), free_port()
    # mTLS is on by default under `run` and the local CA is created on first use.
    orders = _start_run(cluster, "orders", orders_http, orders_app, "orders.jsonl")
    checkout = _start_run(cluster, "checkout", checkout_http, checkout_app, "checkout.jsonl")
    from tests.e2e.harness import Sidecar

    for process, port, name in (
        (orders, orders_http, "orders"),
        (checkout, checkout_http, "checkout"),
    ):
        cluster.wait_ready(Sidecar(name, port, process, cluster.root / "none.log"))
    assert (cluster.home / ".tether" / "certs" / "issuer.key").exists()
    # `run` starts the app only once the sidecar answers, so the first calls may
    # find the app not listening yet.
    wait_until(
        lambda: (
            request(checkout_http, "POST", "/v1.0/invoke/orders/method/neworder", body=b"{}").status
            == 200
        ),
        "a call from checkout reaches the orders app",
    )
    # The app leaves on its own: `tether run` stops the sidecar and exits with the app's status.
    assert request(orders_http, "POST", "/v1.0/invoke/orders/method/quit").status == 200
    assert orders.wait(30) == 0
    with pytest.raises(OSError):
        request(orders_http, "GET", "/v1.0/healthz", timeout=2)
    # SIGTERM to `tether run` is forwarded; both children stop.
    checkout.send_signal(signal.SIGTERM)
    assert checkout.wait(30) in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
    with pytest.raises(OSError):
        request(checkout_http, "GET", "/v1.0/healthz", timeout=2)


# The app under `tether run`: write its environment, and whether something listens on
# DAPR_GRPC_PORT, to a file and exit.
_DUMP_ENV = (
    "import json, os, socket, sys\n"
    "env = dict(os.environ)\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(env['DAPR_GRPC_PORT'])), 5).close()\n"
    "    env['_GRPC_LISTENING'] = 'yes'\n"
    "except (KeyError, ValueError, OSError) as exc:\n"
    "    env['_GRPC_LISTENING'] = repr(exc)\n"
    "json.dump(env, open(sys.argv[1], 'w'))\n"
)


def _run_dumping_env(cluster: Cluster, dump: Path, *flags: str) -> dict[str, str]:
    http_port, app_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            *tether_command(),
            "run",
            "--app-id",
            "envcheck",
            "--app-port",
            str(app_port),
            "--dapr-http-port",
            str(http_port),
            "--enable-mtls=false",
            "--metrics-listen-address",
            "127.0.0.1",
            *flags,
            "--",
            sys.executable,
            "-c",
            _DUMP_ENV,
            str(dump),
        ],
        # Inherited from a shell set up for daprd: the app gets the port tether serves.
        env={**cluster.env, "DAPR_GRPC_PORT": "1"},
    )
    cluster.processes.append(process)
    assert process.wait(60) == 0
    env: dict[str, str] = json.loads(dump.read_text())
    assert env["DAPR_HTTP_PORT"] == str(http_port)
    assert env["APP_ID"] == "envcheck"
    assert env["APP_PORT"] == str(app_port)
    return env


def test_run_gives_the_app_dapr_variables_and_the_grpc_port_it_serves(cluster: Cluster) -> None:
    # Without --dapr-grpc-port: a free port (as `dapr run`), not 50001 for every app.
    env = _run_dumping_env(cluster, cluster.root / "app-env.json")
    assert env["DAPR_GRPC_PORT"] not in ("1", "")
    assert env["_GRPC_LISTENING"] == "yes"
    # With it: that port.
    port = free_port()
    env = _run_dumping_env(cluster, cluster.root / "app-env-2.json", "--dapr-grpc-port", str(port))
    assert env["DAPR_GRPC_PORT"] == str(port)
    assert env["_GRPC_LISTENING"] == "yes"


def test_certs_init_writes_dapr_file_names_and_refuses_to_overwrite(cluster: Cluster) -> None:
    target = cluster.root / "ca"
    first = cluster.tether("certs", "init", "--dir", str(target), "--trust-domain", "example.org")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in target.iterdir()) == ["ca.crt", "issuer.crt", "issuer.key"]
    again = cluster.tether("certs", "init", "--dir", str(target))
    assert again.returncode != 0
    assert again.stderr.startswith("tether: error: ")
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--placement-host-address", "x"],
            "--placement-host-address: actors is not supported by tether yet",
        ),
        (["--dapr-grpc-port", "0"], "--dapr-grpc-port: '0' is not a port number (1-65535)"),
        (
            ["--app-protocol", "https"],
            "--app-protocol: 'https' is not supported (supported: http, grpc, grpcs)",
        ),
        (["--max-body-size", "lots"], "--max-body-size: 'lots' is not a size"),
        (["--dapr-http-port", "99999"], "--dapr-http-port: '99999' is not a port number (1-65535)"),
        (["--enable-mtls=maybe"], "--enable-mtls: 'maybe' is not true or false"),
    ],
)
def test_bad_flags_get_one_clear_line(cluster: Cluster, args: list[str], message: str) -> None:
    result = cluster.tether("sidecar", "--app-id", "x", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"tether: error: {result.stderr.strip()[15:]}"]
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_mtls_without_a_ca_says_how_to_make_one(cluster: Cluster) -> None:
    result = cluster.tether(
        "sidecar", "--app-id", "x", "--enable-mtls", "--dapr-http-port", str(free_port())
    )
    assert result.returncode == 1
    assert "tether certs init" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(cluster: Cluster) -> None:
    busy = cluster.sidecar("first", mtls=False)
    result = cluster.tether(
        "sidecar", "--app-id", "second", "--dapr-http-port", str(busy.http_port)
    )
    assert result.returncode == 1
    assert f"cannot listen on HTTP port {busy.http_port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_component_files_are_refused_until_supported(cluster: Cluster) -> None:
    resources = cluster.root / "resources"
    resources.mkdir()
    (resources / "statestore.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\n"
    )
    result = cluster.tether("sidecar", "--app-id", "x", "--resources-path", str(resources))
    assert result.returncode == 2
    assert "statestore.yaml: kind: Component: components (state stores" in result.stderr


def test_configuration_file_sets_the_registry(cluster: Cluster) -> None:
    registry = cluster.root / "custom-registry.db"
    config = cluster.root / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n"
        "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {registry}\n"
    )
    app = cluster.app("orders")
    cluster.sidecar("orders", app, mtls=False, extra=("--config", str(config)))
    checkout = cluster.sidecar("checkout", mtls=False, extra=("--config", str(config)))
    assert registry.exists()
    assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/cfg").status == 200
    # A sidecar on the default registry does not see them.
    elsewhere = cluster.sidecar("elsewhere", mtls=False)
    assert request(elsewhere.http_port, "GET", "/v1.0/invoke/orders/method/cfg").status == 500


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a TCP socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_run_binds_metrics_to_loopback_unless_told_otherwise(cluster: Cluster) -> None:
    http_port, app_port = free_port(), free_port()
    run = _start_run(cluster, "orders", http_port, app_port, "orders.jsonl", metrics_flags=())
    from tests.e2e.harness import Sidecar

    cluster.wait_ready(Sidecar("orders", http_port, run, cluster.root / "none.log"))
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    flags = [Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0") for child in children]
    sidecar_flags = next(argv for argv in flags if "sidecar" in argv)
    assert "--metrics-listen-address=127.0.0.1" in sidecar_flags
    port = int(next(f for f in sidecar_flags if f.startswith("--metrics-port=")).split("=")[1])
    wait_until(lambda: listening_addresses(port) == {"127.0.0.1"}, "metrics on loopback only")
