"""A sidecar loads only what its settings use: memory is paid per sidecar.

Each probe runs in a fresh interpreter (so nothing the test process imported can
hide an import), builds the settings from a ``tether sidecar`` command line as
``proxy.cli`` does, starts the real ``Sidecar`` on uvloop, stops it, and reports
which of the optional libraries were loaded by then. Each optional library is
also shown loaded when its setting asks for it, so the probe cannot pass by
never reaching the code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from proxy.cli import main

ROOT = Path(__file__).resolve().parents[2]

# What a sidecar may leave out, by top-level module: tracing, the DNS and mDNS
# resolvers, certificate building, metrics, YAML parsing.
OPTIONAL = ("opentelemetry", "dns", "zeroconf", "cryptography", "prometheus_client", "yaml")

_PROBE = """
import json, os, sys

# Ports outside the kernel's ephemeral range: one from bind(0) could be taken again
# by a process binding 0 before the sidecar binds it.
from bench.ports import free_port
from proxy.cli import build_parser, settings_from_args
from proxy.hop import grpc_tuning

grpc_tuning.apply()
flags = json.loads(sys.argv[1])
argv = ["sidecar", "--app-id", "probe", "--dapr-http-port", str(free_port()),
        "--metrics-port", str(free_port()), "--metrics-listen-address", "127.0.0.1",
        "--dapr-internal-grpc-listen-address", "127.0.0.1",
        "--dapr-internal-grpc-port", str(free_port()), *flags]
settings = settings_from_args(build_parser().parse_args(argv), os.environ, mtls_default=False)

import uvloop

from proxy.sidecar import Sidecar


async def run():
    sidecar = Sidecar(settings)
    try:
        await sidecar.start()
        assert sidecar.is_ready()
    finally:
        await sidecar.stop()


uvloop.run(run())
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded(flags: list[str], home: Path) -> set[str]:
    """The optional libraries a sidecar started with ``flags`` had loaded."""
    home.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(flags)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**_environment(), "HOME": str(home)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return set(modules) & set(OPTIONAL)


def _environment() -> dict[str, str]:
    # The probe's own settings only: no Dapr variables, no OTel ones from the runner.
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "APP_", "OTEL_"))}


def test_a_sidecar_with_default_settings_loads_only_metrics(tmp_path: Path) -> None:
    # Defaults: SQLite registry, metrics on, tracing sampled but exported nowhere, no mTLS.
    assert loaded([], tmp_path / "home") == {"prometheus_client"}


def test_an_mtls_sidecar_without_metrics_loads_none_of_them(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert main(["certs", "init", "--dir", str(certs)]) == 0
    flags = ["--enable-mtls", "--certs-dir", str(certs), "--enable-metrics=false"]
    # The certificate is built in a child process; this one never loads cryptography.
    assert loaded(flags, tmp_path / "home") == set()


def test_tracing_to_an_exporter_loads_opentelemetry_and_a_config_loads_yaml(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\n"
        "spec:\n  tracing:\n    samplingRate: '1'\n    stdout: true\n"
    )
    found = loaded(["--config", str(config), "--enable-metrics=false"], tmp_path / "home")
    assert found == {"opentelemetry", "yaml"}


def test_a_dns_resolver_loads_dnspython(tmp_path: Path) -> None:
    found = loaded(["--mode", "kubernetes", "--enable-metrics=false"], tmp_path / "home")
    assert found == {"dns"}


def test_importing_the_command_the_sidecar_and_the_runner_loads_none_of_them() -> None:
    script = (
        "import json, sys\n"
        "import proxy.cli, proxy.runner, proxy.sidecar\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_environment(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) & set(OPTIONAL) == set()
