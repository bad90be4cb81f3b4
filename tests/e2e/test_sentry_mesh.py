"""A mesh whose sidecars hold no CA key: a real ``tether sentry`` with a short
``workloadCertTTL``, sidecars that get and renew their certificates from it with
tokens from ``tether sentry token``, calls both ways over several certificate
lifetimes with zero failures (including to an instance started after the first
certificates expired), and a sidecar holding another app's token refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.e2e.harness import App, Cluster, Sidecar, wait_until
from tests.e2e.sentry_process import Sentry, start_sentry
from tests.e2e.test_certificate_rotation import Load

TTL = 8.0  # seconds: renewal every ~4 s, long enough for a renewal on a busy machine
LIFETIMES = 3.5


def sentry_config(path: Path) -> Path:
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: daprsystem}\n"
        f"spec:\n  mtls:\n    workloadCertTTL: {TTL:g}s\n    allowedClockSkew: 0s\n"
    )
    return path


def token_file(cluster: Cluster, ca_dir: Path, app_id: str) -> Path:
    made = cluster.tether(
        "sentry", "token", "--issuer-credentials", str(ca_dir), "--app-id", app_id
    )
    assert made.returncode == 0, made.stderr
    path = cluster.root / f"{app_id}.token"
    path.write_text(made.stdout)
    path.chmod(0o600)
    return path


class Mesh:
    def __init__(self, cluster: Cluster, ca_dir: Path, sentry: Sentry) -> None:
        self.cluster = cluster
        self.ca_dir = ca_dir
        self.sentry = sentry
        self.no_ca = cluster.root / "no-ca"  # no sidecar reads a CA folder
        self.no_ca.mkdir(exist_ok=True)

    def sidecar(self, app_id: str, app: App | None, token: Path, wait: bool = True) -> Sidecar:
        flags = (
            "--sentry-address", f"127.0.0.1:{self.sentry.grpc_port}",
            "--certs-dir", str(self.no_ca),
        )  # fmt: skip
        env = {
            "DAPR_TRUST_ANCHORS": (self.ca_dir / "ca.crt").read_text(),
            "DAPR_SENTRY_TOKEN_FILE": str(token),
        }
        return self.cluster.sidecar(app_id, app, extra=flags, env=env, wait=wait)


def test_a_mesh_on_sentry_certificates_rotates_with_zero_failed_calls(cluster: Cluster) -> None:
    ca_dir = cluster.certs_init(cluster.root / "sentry-ca")
    sentry = start_sentry(cluster, ca_dir, "--config", str(sentry_config(cluster.root / "s.yaml")))
    mesh = Mesh(cluster, ca_dir, sentry)
    orders_app, checkout_app = cluster.app("orders"), cluster.app("checkout")
    mesh.sidecar("orders", orders_app, token_file(cluster, ca_dir, "orders"))
    checkout = mesh.sidecar("checkout", checkout_app, token_file(cluster, ca_dir, "checkout"))
    late_token = token_file(cluster, ca_dir, "late")

    there = Load(checkout, ["orders"])
    workers = [threading.Thread(target=there.run, daemon=True)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    late_app: App | None = None
    try:
        time.sleep(TTL + 1)  # every first certificate has expired by now
        late_app = cluster.app("late")
        late = mesh.sidecar("late", late_app, late_token)
        there.targets.append("late")
        back = Load(late, ["checkout"])  # and calls the other way
        workers.append(threading.Thread(target=back.run, daemon=True))
        workers[-1].start()
        wait_until(lambda: time.monotonic() - started > LIFETIMES * TTL, "several lifetimes", 60)
    finally:
        there.stop.set()
        if len(workers) > 1:
            back.stop.set()
        for worker in workers:
            worker.join(60)
    assert not any(worker.is_alive() for worker in workers)

    assert there.failures == [] and back.failures == []
    assert there.unhealthy == [] and back.unhealthy == []
    assert there.sent["orders"] > 10 and there.sent["late"] > 3 and back.sent["checkout"] > 3
    # Each call reached its app exactly once.
    assert len(orders_app.received()) == there.sent["orders"]
    assert late_app is not None and len(late_app.received()) == there.sent["late"]
    assert len(checkout_app.received()) == back.sent["checkout"]
    assert checkout.log().count("workload certificate renewed from Sentry") >= 3, checkout.log()
    assert not list(mesh.no_ca.iterdir())


def test_a_sidecar_with_another_apps_token_gets_no_certificate(cluster: Cluster) -> None:
    ca_dir = cluster.certs_init(cluster.root / "sentry-ca")
    sentry = start_sentry(cluster, ca_dir)
    mesh = Mesh(cluster, ca_dir, sentry)
    payments = mesh.sidecar("payments", None, token_file(cluster, ca_dir, "orders"), wait=False)
    assert payments.process.wait(60) == 1
    assert "refused the certificate (PERMISSION_DENIED)" in payments.log(), payments.log()
    refusal = wait_until(
        lambda: next((line for line in sentry.log().splitlines() if "payments" in line), None),
        "Sentry logs the refusal",
    )
    assert "level=warning" in refusal, refusal
