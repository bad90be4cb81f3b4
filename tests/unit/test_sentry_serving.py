"""Sentry's own certificate: its identity, its names, when it is renewed, and how a
renewed one reaches grpcio's fetcher exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.authority import Issuer, create_authority
from sentry.serving import ServingCredentials, issue_serving_certificate, sentry_identity

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _issuer() -> Issuer:
    files = create_authority("localhost", NOW - timedelta(days=1))
    key = serialization.load_pem_private_key(files.issuer_key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Issuer(x509.load_pem_x509_certificate(files.issuer_cert_pem), key,
                  files.issuer_cert_pem, files.ca_cert_pem)  # fmt: skip


def test_sentrys_certificate_names_dapr_sentry_and_localhost() -> None:
    identity = sentry_identity("localhost", "default")
    assert str(identity) == "spiffe://localhost/ns/default/dapr-sentry"
    serving = issue_serving_certificate(
        _issuer(), identity, NOW, timedelta(hours=24), timedelta(minutes=15)
    )
    chain = x509.load_pem_x509_certificates(serving.chain_pem)
    assert len(chain) == 2
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(identity)]
    assert san.get_values_for_type(x509.DNSName) == [
        identity.peer_name(),
        "localhost",
        identity.exact_name(),  # what sidecars pin: trust domain included
    ]
    assert serving.renew_at() == NOW + timedelta(hours=12)


def test_a_renewed_certificate_reaches_the_fetcher_once() -> None:
    issuer = _issuer()
    identity = sentry_identity("localhost", "default")
    first = issue_serving_certificate(issuer, identity, NOW, timedelta(hours=1), timedelta(0))
    credentials = ServingCredentials(first)
    assert credentials._fetch() is None
    second = issue_serving_certificate(issuer, identity, NOW, timedelta(hours=1), timedelta(0))
    credentials.replace(second)
    assert credentials.current is second
    assert credentials._fetch() is not None
    assert credentials._fetch() is None


def test_healthz_is_503_until_serving_and_after_the_issuer_expires() -> None:
    from sentry.server import health_answer

    later = NOW + timedelta(days=1)
    assert health_answer(False, NOW, later)[0] == 503
    assert health_answer(True, NOW, later)[0] == 200
    assert health_answer(True, later, later)[0] == 503
