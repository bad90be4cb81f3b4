"""``tether sentry`` refuses to start on bad input with one line per problem and exit
1, never a traceback; ``tether sentry token`` prints one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from certs.authority import create_authority, write_authority
from tests.e2e.harness import Cluster

BAD_CONFIG = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  tracing: {}
  mtls:
    workloadCertTTL: soon
    tokenValidators:
      - name: kubernetes
"""


def _sentry(cluster: Cluster, *args: str) -> tuple[int, str]:
    result = cluster.tether("sentry", "--port", "0", "--healthz-port", "0", "--metrics-port",
                            "0", "--listen-address", "127.0.0.1", *args)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr


def test_bad_input_exits_1_with_every_problem(cluster: Cluster, tmp_path: Path) -> None:
    ca_dir = cluster.certs_init(tmp_path / "ca")
    config = tmp_path / "sentry.yaml"
    config.write_text(BAD_CONFIG)
    code, stderr = _sentry(cluster, "--issuer-credentials", str(ca_dir), "--config", str(config))
    assert code == 1
    lines = stderr.splitlines()
    for path in ("spec.tracing", "spec.mtls.workloadCertTTL", "spec.mtls.tokenValidators[0].name"):
        assert any(line.startswith(f"tether sentry: error: {config}: {path}: ") for line in lines)
    assert "not built yet" in stderr

    code, stderr = _sentry(cluster, "--issuer-credentials", str(tmp_path / "nowhere"))
    assert code == 1 and "tether certs init" in stderr and len(stderr.splitlines()) == 1

    broken = tmp_path / "broken"
    cluster.certs_init(broken)
    (broken / "issuer.key").write_text("not a key\n")
    code, stderr = _sentry(cluster, "--issuer-credentials", str(broken))
    assert code == 1 and "issuer.key" in stderr and len(stderr.splitlines()) == 1

    expired = tmp_path / "expired"
    write_authority(expired, create_authority("public", datetime.now(UTC) - timedelta(days=400)))
    code, stderr = _sentry(cluster, "--issuer-credentials", str(expired))
    assert code == 1 and "expired" in stderr and len(stderr.splitlines()) == 1

    code, stderr = _sentry(cluster, "--issuer-credentials", str(ca_dir), "--port", "99999")
    assert code == 2 and "--port" in stderr


def test_token_command(cluster: Cluster, tmp_path: Path) -> None:
    ca_dir = cluster.certs_init(tmp_path / "ca")
    result = cluster.tether("sentry", "token", "--issuer-credentials", str(ca_dir),
                            "--app-id", "orders", "--ttl", "1h")  # fmt: skip
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1
    assert result.stdout.count(".") == 2
    for bad in (["--ttl", "soon"], ["--ttl", "0s"], ["--app-id", "a/b"]):
        args = ["sentry", "token", "--issuer-credentials", str(ca_dir), "--app-id", "x", *bad]
        result = cluster.tether(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    result = cluster.tether(
        "sentry", "token", "--issuer-credentials", str(tmp_path), "--app-id", "x"
    )
    assert result.returncode == 1 and "tether certs init" in result.stderr
