"""Certificates renewed at half their lifetime with calls running all along: a
``spec.mtls.workloadCertTTL`` of a few seconds, calls over every transport (the
multiplexed stream, its body fetch, grpcio's CallLocalStream) for several
lifetimes, and zero failures counted at the caller and at the apps, including calls
to an instance started after the first certificates expired."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.certificates import CertificateProbe, internal_port, short_lived_config
from tests.e2e.harness import App, Cluster, Sidecar, request, wait_until

TTL = 8.0  # seconds: renewal every ~4 s, long enough for a renewal on a busy machine
LIFETIMES = 3.5
LARGE = 300 * 1024  # above the multiplexed stream's inline limit: CallLocalStream


@dataclass
class Load:
    """Calls from one sidecar, in a thread, until stopped; every outcome counted."""

    caller: Sidecar
    targets: list[str]
    sent: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unhealthy: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        turn = 0
        while not self.stop.is_set():
            for target in list(self.targets):
                turn += 1
                self._call(target, turn)
            health = request(self.caller.http_port, "GET", "/v1.0/healthz", timeout=10)
            if health.status != 204:
                self.unhealthy.append(health.body.decode(errors="replace"))

    def _call(self, target: str, turn: int) -> None:
        base = f"/v1.0/invoke/{target}/method"
        if turn % 5 == 0:
            method, path, body = "POST", f"{base}/large", b"x" * LARGE
        elif turn % 5 == 1:
            method, path, body = "GET", f"{base}/download/400000", None
        else:
            method, path, body = "POST", f"{base}/small", b"hello"
        try:
            answer = request(self.caller.http_port, method, path, body, timeout=30)
        except OSError as exc:
            self.failures.append(f"{target} {path}: {exc}")
        else:
            if answer.status != 200:
                self.failures.append(f"{target} {path}: {answer.status} {answer.body[:200]!r}")
            elif path.endswith("download/400000") and len(answer.body) != 400000:
                self.failures.append(f"{target} {path}: {len(answer.body)} bytes")
        self.sent[target] = self.sent.get(target, 0) + 1


def test_calls_never_fail_while_certificates_rotate(cluster: Cluster, tmp_path: Path) -> None:
    ca_dir = cluster.certs_init()
    config = short_lived_config(tmp_path / "rotation.yaml", f"{TTL:g}s")
    flags = ("--config", str(config))
    orders_app = cluster.app("orders")
    orders = cluster.sidecar("orders", orders_app, extra=flags)
    checkout = cluster.sidecar("checkout", extra=flags)
    probe = CertificateProbe(ca_dir)
    orders_port = internal_port(orders)
    first = probe.presented(orders_port, "orders")

    load = Load(checkout, ["orders"])
    worker = threading.Thread(target=load.run, daemon=True)
    started = time.monotonic()
    worker.start()
    late_app: App | None = None
    try:
        # Every sidecar's first certificate has expired: start another instance then.
        time.sleep(TTL + 1)
        late_app = cluster.app("late")
        cluster.sidecar("late", late_app, extra=flags)
        load.targets.append("late")
        renewed = wait_until(
            lambda: (
                (c := probe.presented(orders_port, "orders"))["serialNumber"]
                != first["serialNumber"]
                and c
            ),
            "orders presenting a renewed certificate",
        )
        wait_until(lambda: time.monotonic() - started > LIFETIMES * TTL, "several lifetimes", 60)
    finally:
        load.stop.set()
        worker.join(60)
    assert not worker.is_alive()

    assert load.failures == []
    assert load.unhealthy == []
    assert load.sent["orders"] > 20 and load.sent["late"] > 5, load.sent
    # Each call reached its app exactly once: nothing lost, nothing replayed.
    assert len(orders_app.received()) == load.sent["orders"]
    assert late_app is not None and len(late_app.received()) == load.sent["late"]
    assert renewed["notAfter"] != first["notAfter"]
    for sidecar in (orders, checkout):
        assert sidecar.log().count("workload certificate renewed") >= 3, sidecar.log()
        assert "failed" not in sidecar.log()
