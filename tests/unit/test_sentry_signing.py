"""What Sentry signs, with an injected clock: the identity a token allows, Dapr's
insecure rules, the CSR checks, and the leaf's shape and validity window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.authority import CaFiles, Issuer, create_authority
from certs.spiffe import SpiffeId
from proxy.protos import sentry_pb2
from sentry.signing import SigningPolicy, SignRefused, sign_request
from sentry.tokens import make_token

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
Request = sentry_pb2.SignCertificateRequest
ORDERS = SpiffeId("public", "default", "orders")


def _issuer(files: CaFiles) -> Issuer:
    key = serialization.load_pem_private_key(files.issuer_key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Issuer(
        certificate=x509.load_pem_x509_certificate(files.issuer_cert_pem),
        private_key=key,
        chain_pem=files.issuer_cert_pem,
        trust_bundle_pem=files.ca_cert_pem,
    )


@pytest.fixture(scope="module")
def files() -> CaFiles:
    return create_authority("public", NOW - timedelta(days=1))


@pytest.fixture(scope="module")
def issuer(files: CaFiles) -> Issuer:
    return _issuer(files)


def _csr(key=None, *, subject: str = "", sans: tuple[str, ...] = ()) -> tuple[bytes, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)] if subject else [])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(s) for s in sans]),
            critical=False,
        )
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, digest)
    return csr.public_bytes(serialization.Encoding.PEM), key


def _request(issuer: Issuer, spiffe_id: SpiffeId = ORDERS, **fields: object) -> Request:
    csr, _ = _csr()
    token = make_token(issuer.private_key, spiffe_id, NOW.timestamp(), 12 * 3600)  # type: ignore[arg-type]
    values: dict[str, object] = {"id": spiffe_id.app_id, "namespace": spiffe_id.namespace,
        "trust_domain": spiffe_id.trust_domain, "certificate_signing_request": csr,
        "token": token, "token_validator": Request.UNKNOWN}  # fmt: skip
    values.update(fields)
    return Request(**values)


def _refused(request: Request, issuer: Issuer, policy: SigningPolicy | None = None) -> SignRefused:
    with pytest.raises(SignRefused) as caught:
        sign_request(request, issuer, policy or SigningPolicy(), NOW)
    return caught.value


def test_the_leaf_has_daprs_shape(issuer: Issuer, files: CaFiles) -> None:
    csr, key = _csr(subject="someone-else", sans=("spiffe://evil/ns/x/y",))
    signed = sign_request(_request(issuer, certificate_signing_request=csr), issuer,
                          SigningPolicy(), NOW)  # fmt: skip
    leaf = x509.load_pem_x509_certificate(signed.response.workload_certificate)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    # The CSR's subject and SANs are ignored; only its public key is used.
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/default/orders"
    ]
    assert san.value.get_values_for_type(x509.DNSName) == [ORDERS.peer_name()]
    assert leaf.subject == x509.Name([])
    assert leaf.public_key() == key.public_key()
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(issuer.certificate)
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=15)
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=24)
    assert signed.response.valid_until.ToDatetime(UTC) == leaf.not_valid_after_utc
    # Dapr's shape: the leaf followed by the issuer chain, and the anchors beside it.
    chain = x509.load_pem_x509_certificates(signed.response.workload_certificate)
    assert [c.public_bytes(serialization.Encoding.PEM) for c in chain[1:]] == [
        files.issuer_cert_pem
    ]
    assert list(signed.response.trust_chain_certificates) == [files.ca_cert_pem]


def test_the_window_follows_the_configuration(issuer: Issuer) -> None:
    policy = SigningPolicy(workload_ttl=timedelta(seconds=30), clock_skew=timedelta(seconds=5))
    signed = sign_request(_request(issuer), issuer, policy, NOW)
    assert signed.certificate.not_valid_before_utc == NOW - timedelta(seconds=5)
    assert signed.certificate.not_valid_after_utc == NOW + timedelta(seconds=30)


def test_never_past_the_issuers_not_after() -> None:
    short = _issuer(create_authority("public", NOW, issuer_ttl=timedelta(hours=2)))
    signed = sign_request(_request(short), short, SigningPolicy(), NOW)
    assert signed.certificate.not_valid_after_utc == short.not_after


def test_an_expired_issuer_signs_nothing() -> None:
    short = _issuer(create_authority("public", NOW, issuer_ttl=timedelta(hours=2)))
    request = _request(short)
    refusal = _refused_at(request, short, NOW + timedelta(hours=3))
    assert refusal.code == "FAILED_PRECONDITION" and refusal.metric_reason == "cert_sign"


def _refused_at(request: Request, issuer: Issuer, now: datetime) -> SignRefused:
    with pytest.raises(SignRefused) as caught:
        sign_request(request, issuer, SigningPolicy(), now)
    return caught.value


def test_a_token_for_another_app_is_permission_denied(issuer: Issuer) -> None:
    other = make_token(issuer.private_key, SpiffeId("public", "default", "payments"),  # type: ignore[arg-type]
                       NOW.timestamp(), 3600)  # fmt: skip
    refusal = _refused(_request(issuer, token=other), issuer)
    assert refusal.code == "PERMISSION_DENIED" and refusal.metric_reason == "req_id_validation"
    assert "another app ID" in refusal.reason and other not in refusal.reason


def test_the_trust_domain_asked_for_must_be_the_tokens(issuer: Issuer) -> None:
    request = _request(issuer, trust_domain="example.org")
    assert "another trust domain" in _refused(request, issuer).reason
    # No trust domain means Dapr's default, "public", which this token names.
    assert sign_request(_request(issuer, trust_domain=""), issuer, SigningPolicy(), NOW)


def test_no_token_refused(issuer: Issuer) -> None:
    refusal = _refused(_request(issuer, token=""), issuer)
    assert refusal.code == "PERMISSION_DENIED" and "no token" in refusal.reason


def test_insecure_only_when_enabled_and_then_daprs_rules(issuer: Issuer) -> None:
    insecure = {"token": "", "token_validator": Request.INSECURE}
    refusal = _refused(_request(issuer, **insecure), issuer)
    assert refusal.code == "PERMISSION_DENIED" and "not enabled" in refusal.reason
    policy = SigningPolicy(insecure_enabled=True)
    signed = sign_request(_request(issuer, **insecure), issuer, policy, NOW)
    assert signed.spiffe_id == ORDERS
    for app_id in ("a.b", "x" * 65):
        refusal = _refused(_request(issuer, **insecure, id=app_id), issuer, policy)
        assert refusal.code == "PERMISSION_DENIED"
    assert _refused(_request(issuer, **insecure, namespace=""), issuer, policy).code == (
        "INVALID_ARGUMENT"
    )


@pytest.mark.parametrize("validator", [Request.KUBERNETES, Request.JWKS])
def test_validators_not_built_are_refused(issuer: Issuer, validator: int) -> None:
    refusal = _refused(_request(issuer, token_validator=validator), issuer)
    assert refusal.code == "PERMISSION_DENIED" and "not built" in refusal.reason


@pytest.mark.parametrize("missing", ["id", "namespace", "certificate_signing_request"])
def test_a_missing_field_is_invalid_argument(issuer: Issuer, missing: str) -> None:
    refusal = _refused(_request(issuer, **{missing: b"" if "request" in missing else ""}), issuer)
    assert refusal.code == "INVALID_ARGUMENT" and missing in refusal.reason
    assert refusal.metric_reason == "insufficient_data"


def test_a_csr_with_a_bad_signature_is_refused(issuer: Issuer) -> None:
    csr, _ = _csr()
    der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    import base64

    body = base64.encodebytes(bytes(der)).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    refusal = _refused(_request(issuer, certificate_signing_request=pem.encode()), issuer)
    assert refusal.code == "INVALID_ARGUMENT" and refusal.metric_reason == "cert_parse"


@pytest.mark.parametrize(
    "csr",
    [
        b"not a csr",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_a_malformed_csr_is_refused(issuer: Issuer, csr: bytes) -> None:
    refusal = _refused(_request(issuer, certificate_signing_request=csr), issuer)
    assert refusal.code == "INVALID_ARGUMENT" and refusal.metric_reason == "cert_parse"


def test_weak_rsa_refused_and_ed25519_accepted(issuer: Issuer) -> None:
    weak, _ = _csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert (
        "unsupported key"
        in _refused(_request(issuer, certificate_signing_request=weak), issuer).reason
    )
    edwards, key = _csr(ed25519.Ed25519PrivateKey.generate())
    signed = sign_request(_request(issuer, certificate_signing_request=edwards), issuer,
                          SigningPolicy(), NOW)  # fmt: skip
    assert signed.certificate.public_key() == key.public_key()


def test_an_expired_token_is_refused(issuer: Issuer) -> None:
    request = _request(issuer)
    refusal = _refused_at(request, issuer, NOW + timedelta(hours=13))
    assert refusal.code == "PERMISSION_DENIED" and "expired" in refusal.reason
