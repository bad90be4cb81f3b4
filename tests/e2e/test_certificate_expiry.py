"""A sidecar whose certificate cannot be renewed says so: ``/v1.0/healthz`` turns
unhealthy (Dapr's error JSON) and the log says why before the certificate expires;
once expired it never reports healthy; when renewal works again, it recovers."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.certificates import CertificateProbe, internal_port, not_after, short_lived_config
from tests.e2e.harness import Cluster, request, wait_until

TTL = 12.0


def test_failing_renewal_turns_healthz_unhealthy_before_expiry(
    cluster: Cluster, tmp_path: Path
) -> None:
    ca_dir = cluster.certs_init()
    config = short_lived_config(tmp_path / "short.yaml", f"{TTL:g}s")
    orders = cluster.sidecar("orders", cluster.app("orders"), extra=("--config", str(config)))
    probe = CertificateProbe(ca_dir)
    port = internal_port(orders)
    expires = not_after(probe.presented(port, "orders"))
    # The local CA's key goes away: every renewal from now on fails.
    hidden = ca_dir / "issuer.key.hidden"
    (ca_dir / "issuer.key").rename(hidden)

    def health() -> tuple[int, bytes]:
        answer = request(orders.http_port, "GET", "/v1.0/healthz", timeout=5)
        return answer.status, answer.body

    status, body = wait_until(lambda: (h := health())[0] != 204 and h, "healthz unhealthy", 30)
    noticed = time.time()
    assert noticed < expires, "healthz turned unhealthy only after the certificate expired"
    assert status == 500
    assert b'"errorCode":"ERR_HEALTH_NOT_READY"' in body.replace(b" ", b"")
    assert b"dapr is not ready: [certificate]" in body
    assert "renewing the workload certificate from the local CA" in orders.log()
    wait_until(lambda: "/v1.0/healthz reports unhealthy" in orders.log(), "the log saying why")
    assert time.time() < expires, "the log said why only after the certificate expired"

    # Past expiry: never healthy, inbound or outbound.
    wait_until(lambda: time.time() > expires + 1, "the certificate's expiry", 30)
    for _ in range(10):
        assert health()[0] == 500
        outbound = request(orders.http_port, "GET", "/v1.0/healthz/outbound", timeout=5)
        assert outbound.status == 500
        time.sleep(0.2)
    assert "workload certificate expired" in orders.log()

    # Renewal works again: a fresh certificate, healthy again.
    hidden.rename(ca_dir / "issuer.key")
    wait_until(lambda: health()[0] == 204, "healthz healthy after a successful renewal", 30)
    assert not_after(probe.presented(port, "orders")) > time.time()
    assert "workload certificate healthy again" in orders.log()
