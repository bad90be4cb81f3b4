"""The sidecar's Sentry client (``proxy.sentry_client``, run in a child process)
against a stand-in Sentry: it gets a certificate for its own key, sends the token
and validator the contract says, pins Sentry's identity, and reports a refusal or
an unreachable Sentry in one line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from certs.authority import create_authority, write_authority
from certs.errors import CertError
from certs.spiffe import SpiffeId
from proxy.config.sentry_settings import SentrySettings
from proxy.protos import sentry_pb2
from proxy.sentry_client import request_in_child
from tests.e2e.harness import free_port
from tests.e2e.sentry_standin import StandInSentry

ORDERS = SpiffeId("public", "default", "orders")
SENTRY_ID = SpiffeId("localhost", "default", "dapr-sentry")


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    write_authority(tmp_path / "ca", create_authority("public", datetime.now(UTC)))
    return tmp_path / "ca"


@pytest.fixture
def sentry(ca_dir: Path) -> Iterator[StandInSentry]:
    started = StandInSentry(ca_dir).start()
    try:
        yield started
    finally:
        started.stop()


def settings_for(
    sentry: StandInSentry, ca_dir: Path, token_file: Path | None = None
) -> SentrySettings:
    anchors = (ca_dir / "ca.crt").read_bytes()
    return SentrySettings(sentry.address, anchors, token_file, SENTRY_ID)


def test_a_certificate_for_our_own_key_and_identity(sentry: StandInSentry, ca_dir: Path) -> None:
    identity = asyncio.run(request_in_child(settings_for(sentry, ca_dir), ORDERS, 1))
    assert identity.spiffe_id == ORDERS
    leaf = x509.load_pem_x509_certificate(identity.certificate_chain_pem)
    assert leaf.not_valid_before_utc == identity.not_before
    assert leaf.not_valid_after_utc == identity.not_after
    assert identity.certificate_chain_pem.count(b"BEGIN CERTIFICATE") == 2  # leaf, issuer
    assert identity.trust_bundle_pem.strip() == (ca_dir / "ca.crt").read_bytes().strip()
    (request,) = sentry.requests
    assert (request.id, request.namespace, request.trust_domain) == ("orders", "default", "public")
    # No token: Dapr's self-hosted insecure validator.
    assert request.token == ""
    assert request.token_validator == sentry_pb2.SignCertificateRequest.INSECURE
    csr = x509.load_pem_x509_csr(request.certificate_signing_request)
    assert csr.public_key() == leaf.public_key()


def test_the_token_file_is_sent_stripped_with_the_default_validator(
    sentry: StandInSentry, ca_dir: Path, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("  secret-token\n")
    asyncio.run(request_in_child(settings_for(sentry, ca_dir, token), ORDERS, 1))
    (request,) = sentry.requests
    assert request.token == "secret-token"
    assert request.token_validator == sentry_pb2.SignCertificateRequest.UNKNOWN


def test_a_refusal_is_reported_word_for_word_without_retrying(
    sentry: StandInSentry, ca_dir: Path
) -> None:
    sentry.refuse = "token names app payments, not orders"
    with pytest.raises(CertError) as failure:
        asyncio.run(request_in_child(settings_for(sentry, ca_dir), ORDERS, 3))
    assert str(failure.value) == (
        f"Sentry at {sentry.address} refused the certificate (PERMISSION_DENIED): "
        "token names app payments, not orders"
    )
    assert len(sentry.requests) == 1


def test_an_unreachable_sentry_is_retried_a_bounded_number_of_times(ca_dir: Path) -> None:
    absent = StandInSentry(ca_dir, port=free_port())  # never started
    with pytest.raises(
        CertError, match=r"cannot get a workload certificate from Sentry at .* \(tried 2 times"
    ):
        asyncio.run(request_in_child(settings_for(absent, ca_dir), ORDERS, 2))


def test_a_sentry_with_another_identity_is_not_trusted(sentry: StandInSentry, ca_dir: Path) -> None:
    pinned = SentrySettings(
        sentry.address,
        (ca_dir / "ca.crt").read_bytes(),
        None,
        SpiffeId("localhost", "dapr-system", "dapr-sentry"),
    )
    with pytest.raises(CertError, match="cannot get a workload certificate"):
        asyncio.run(request_in_child(pinned, ORDERS, 1))
    assert sentry.requests == []


def test_a_sentry_in_another_trust_domain_is_not_trusted(
    sentry: StandInSentry, ca_dir: Path
) -> None:
    pinned = SentrySettings(
        sentry.address,
        (ca_dir / "ca.crt").read_bytes(),
        None,
        SpiffeId("cluster.local", "default", "dapr-sentry"),  # the stand-in is in localhost
    )
    with pytest.raises(CertError, match="cannot get a workload certificate"):
        asyncio.run(request_in_child(pinned, ORDERS, 1))
    assert sentry.requests == []
