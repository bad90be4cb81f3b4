"""One SignCertificate request, decided: which validator, whether the token allows the
SPIFFE ID asked for, whether the CSR is sound, and the leaf Sentry signs for it.

Pure apart from the signature itself: the clock and the issuer are passed in, and a
refusal is a ``SignRefused`` carrying its gRPC status name, a one-line reason and the
``reason`` label of ``dapr_sentry_cert_sign_failure_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certs.authority import Issuer
from certs.errors import CaInvalid, InvalidSpiffeId
from certs.spiffe import SpiffeId
from certs.workload import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_WORKLOAD_TTL,
    sign_workload_certificate,
    with_newline,
)
from proxy.protos import sentry_pb2
from sentry.tokens import TokenRefused, VerifyingKey, check_token_for

# Dapr: a request without a trust domain gets the apps' default one.
DEFAULT_APP_TRUST_DOMAIN = "public"
# Dapr's insecure validator: an app ID of at most 64 characters without dots.
_INSECURE_MAX_ID = 64
_CSR_PEM_TYPE = b"-----BEGIN CERTIFICATE REQUEST-----"
_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_MIN_RSA_BITS = 2048

# Reasons of dapr_sentry_cert_sign_failure_total, Dapr Sentry's own words.
MISSING = "insufficient_data"
IDENTITY = "req_id_validation"
CSR = "cert_parse"
SIGN = "cert_sign"

Validator = sentry_pb2.SignCertificateRequest.TokenValidator


class SignRefused(Exception):
    """A request Sentry does not sign: ``code`` (a grpc.StatusCode name), ``reason``
    (one line, never the token), ``metric_reason`` (the failure metric's label)."""

    def __init__(self, code: str, reason: str, metric_reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.metric_reason = metric_reason


@dataclass(frozen=True)
class SigningPolicy:
    """What Sentry's Configuration decides about every certificate it signs."""

    workload_ttl: timedelta = DEFAULT_WORKLOAD_TTL
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    insecure_enabled: bool = False


@dataclass(frozen=True)
class Signed:
    spiffe_id: SpiffeId
    certificate: x509.Certificate
    response: sentry_pb2.SignCertificateResponse


def _invalid(reason: str, metric_reason: str = MISSING) -> SignRefused:
    return SignRefused("INVALID_ARGUMENT", reason, metric_reason)


def _denied(reason: str) -> SignRefused:
    return SignRefused("PERMISSION_DENIED", reason, IDENTITY)


def requested_identity(
    request: sentry_pb2.SignCertificateRequest,
    policy: SigningPolicy,
    token_key: VerifyingKey,
    now: datetime,
) -> SpiffeId:
    """The SPIFFE ID the request may have, or SignRefused."""
    missing = [
        name
        for name, value in (
            ("id", request.id),
            ("namespace", request.namespace),
            ("certificate_signing_request", request.certificate_signing_request),
        )
        if not value
    ]
    if missing:
        raise _invalid(f"missing {', '.join(missing)}")
    validator = request.token_validator
    if validator == Validator.INSECURE:
        if not policy.insecure_enabled:
            raise _denied(
                "the insecure validator is not enabled on this Sentry "
                "(spec.mtls.tokenValidators: [{name: insecure}]); send a token instead"
            )
        if "." in request.id or len(request.id) > _INSECURE_MAX_ID:
            raise _denied("an app ID must have at most 64 characters and no dots")
    elif validator in (Validator.KUBERNETES, Validator.JWKS):
        name = Validator.Name(validator).lower()
        raise _denied(f"the {name} token validator is not built in tether's Sentry yet")
    elif validator != Validator.UNKNOWN:
        raise _invalid(f"unknown token validator {validator}")
    elif not request.token:
        raise _denied("no token (write one from `tether sentry token` to DAPR_SENTRY_TOKEN_FILE)")
    try:
        spiffe_id = SpiffeId(
            request.trust_domain or DEFAULT_APP_TRUST_DOMAIN, request.namespace, request.id
        )
    except InvalidSpiffeId as exc:
        raise _invalid(str(exc), IDENTITY) from None
    if validator == Validator.UNKNOWN:
        try:
            check_token_for(
                request.token,
                token_key,
                spiffe_id,
                now.timestamp(),
                policy.clock_skew.total_seconds(),
            )
        except TokenRefused as exc:
            raise _denied(f"{exc} (asked for {spiffe_id})") from None
    return spiffe_id


def csr_public_key(pem: bytes) -> CertificatePublicKeyTypes:
    """The public key of a well-formed, self-signed CSR; its subject and SANs are not read."""
    if not pem.lstrip().startswith(_CSR_PEM_TYPE):
        raise _invalid("certificate_signing_request is not a PEM CERTIFICATE REQUEST", CSR)
    try:
        csr = x509.load_pem_x509_csr(pem)
        valid = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        raise _invalid("certificate_signing_request cannot be parsed", CSR) from None
    if not valid:
        raise _invalid("certificate_signing_request has a bad signature", CSR)
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_CURVES:
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
        return key
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key
    raise _invalid(
        "certificate_signing_request has an unsupported key "
        "(use ECDSA P-256/P-384/P-521, Ed25519, Ed448 or RSA of 2048 bits or more)",
        CSR,
    )


def sign_request(
    request: sentry_pb2.SignCertificateRequest,
    issuer: Issuer,
    policy: SigningPolicy,
    now: datetime,
) -> Signed:
    """The answer to one SignCertificate request, or SignRefused."""
    token_key = issuer.certificate.public_key()
    assert isinstance(
        token_key,
        ec.EllipticCurvePublicKey
        | rsa.RSAPublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    )  # load_issuer accepts only these
    spiffe_id = requested_identity(request, policy, token_key, now)
    public_key = csr_public_key(request.certificate_signing_request)
    try:
        leaf = sign_workload_certificate(
            issuer,
            spiffe_id,
            public_key,
            now,
            ttl=policy.workload_ttl,
            clock_skew=policy.clock_skew,
        )
    except CaInvalid as exc:
        raise SignRefused("FAILED_PRECONDITION", str(exc), SIGN) from None
    # Dapr's shape (pkg/sentry/server, 1.10+): the leaf followed by the issuer chain,
    # which daprd presents as is, and the trust anchors beside it.
    response = sentry_pb2.SignCertificateResponse(
        workload_certificate=leaf.public_bytes(serialization.Encoding.PEM)
        + with_newline(issuer.chain_pem),
        trust_chain_certificates=[
            cert.public_bytes(serialization.Encoding.PEM)
            for cert in x509.load_pem_x509_certificates(issuer.trust_bundle_pem)
        ],
    )
    response.valid_until.FromDatetime(leaf.not_valid_after_utc)
    return Signed(spiffe_id, leaf, response)
