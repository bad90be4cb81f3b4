"""A real ``tether sentry`` against a daprd-style client: a token for the app gets a
certificate of Dapr's shape chaining to ca.crt; another app's token, or none, gets
nothing; healthz and Dapr's Sentry metrics answer; SIGTERM stops it cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from proxy.protos import sentry_pb2
from tests.e2e.harness import Cluster, request
from tests.e2e.sentry_process import make_csr, start_sentry, tether_token

Request = sentry_pb2.SignCertificateRequest


def _metric(text: str, name: str) -> float:
    """The value of an unlabelled series (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split(" ")[1])
    return 0.0


def test_sentry_signs_only_what_the_token_names(cluster: Cluster, tmp_path: Path) -> None:
    ca_dir = cluster.certs_init(tmp_path / "ca")
    assert {p.name for p in ca_dir.iterdir()} >= {"ca.crt", "issuer.crt", "issuer.key"}
    sentry = start_sentry(cluster, ca_dir)
    token = tether_token(cluster, ca_dir, "orders")
    csr, key = make_csr()
    before = datetime.now(UTC)
    answer = sentry.sign(
        Request(
            id="orders",
            namespace="default",
            trust_domain="public",
            token=token,
            certificate_signing_request=csr,
            token_validator=Request.UNKNOWN,
        )
    )
    after = datetime.now(UTC)

    leaf = x509.load_pem_x509_certificate(answer.workload_certificate)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/default/orders"
    ]
    assert leaf.public_key() == key.public_key()
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    # Dapr's shape: workload_certificate is the leaf then its issuer chain (what daprd
    # presents), trust_chain_certificates the trust anchors (ca.crt).
    leaf_again, issuer = x509.load_pem_x509_certificates(answer.workload_certificate)
    assert leaf_again == leaf
    root = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    assert [x509.load_pem_x509_certificate(pem) for pem in answer.trust_chain_certificates] == [
        root
    ]
    leaf.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(root)
    # Dapr's window: NotBefore = now - 15m, NotAfter = now + 24h.
    skew, ttl = timedelta(minutes=15), timedelta(hours=24)
    slack = timedelta(seconds=2)
    assert before - skew - slack <= leaf.not_valid_before_utc <= after - skew + slack
    assert before + ttl - slack <= leaf.not_valid_after_utc <= after + ttl + slack
    assert answer.valid_until.ToDatetime(UTC) == leaf.not_valid_after_utc

    # Another app's token: PERMISSION_DENIED, no certificate.
    other = tether_token(cluster, ca_dir, "payments")
    with pytest.raises(grpc.RpcError) as denied:
        sentry.sign(
            Request(
                id="orders",
                namespace="default",
                trust_domain="public",
                token=other,
                certificate_signing_request=csr,
            )
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "another app ID" in (denied.value.details() or "")

    # No token, insecure validator not configured: refused.
    with pytest.raises(grpc.RpcError) as insecure:
        sentry.sign(
            Request(
                id="orders",
                namespace="default",
                certificate_signing_request=csr,
                token_validator=Request.INSECURE,
            )
        )
    assert insecure.value.code() == grpc.StatusCode.PERMISSION_DENIED

    log = sentry.log()
    assert log.count("level=warning") == 2 and other not in log and token not in log

    health = request(sentry.healthz_port, "GET", "/healthz")
    assert health.status == 200
    scrape = request(sentry.metrics_port, "GET", "/metrics").body.decode()
    assert _metric(scrape, "dapr_sentry_cert_sign_request_received_total") == 3
    assert _metric(scrape, "dapr_sentry_cert_sign_success_total") == 1
    assert 'dapr_sentry_cert_sign_failure_total{reason="req_id_validation"} 2.0' in scrape
    assert _metric(scrape, "dapr_sentry_issuercert_expiry_timestamp") > after.timestamp()

    assert cluster.stop(sentry.process) == 0
    assert "stopping sentry" in sentry.log()
