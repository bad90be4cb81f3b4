"""Workload identities: a fresh key and a short-lived SPIFFE certificate for one sidecar."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.authority import Issuer, signing_hash
from certs.errors import CaInvalid
from certs.identity import WorkloadIdentity as WorkloadIdentity  # re-exported
from certs.spiffe import SpiffeId

# Dapr Sentry's defaults.
DEFAULT_WORKLOAD_TTL = timedelta(hours=24)
DEFAULT_CLOCK_SKEW = timedelta(minutes=15)


def issue_workload_identity(
    issuer: Issuer,
    spiffe_id: SpiffeId,
    now: datetime,
    ttl: timedelta = DEFAULT_WORKLOAD_TTL,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    extra_dns_names: tuple[str, ...] = (),
) -> WorkloadIdentity:
    """A new key and a leaf certificate with the SPIFFE URI SAN and its peer-name DNS SAN."""
    # Dapr uses Ed25519 here; ECDSA P-256 is what gRPC's BoringSSL handshakes fastest and
    # what every TLS peer (including older Dapr sidecars) is sure to accept.
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = sign_workload_certificate(
        issuer,
        spiffe_id,
        key.public_key(),
        now,
        ttl=ttl,
        clock_skew=clock_skew,
        extra_dns_names=extra_dns_names,
    )
    leaf_pem = certificate.public_bytes(serialization.Encoding.PEM)
    return WorkloadIdentity(
        spiffe_id=spiffe_id,
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_chain_pem=leaf_pem + with_newline(issuer.chain_pem),
        trust_bundle_pem=issuer.trust_bundle_pem,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def sign_workload_certificate(
    issuer: Issuer,
    spiffe_id: SpiffeId,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
    *,
    ttl: timedelta = DEFAULT_WORKLOAD_TTL,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    extra_dns_names: tuple[str, ...] = (),
) -> x509.Certificate:
    """A leaf for ``public_key`` (a Sentry gets it from a CSR): the SPIFFE URI SAN, its
    peer-name DNS SAN (and ``extra_dns_names``), server and client EKU, NotBefore
    ``now - clock_skew``, NotAfter ``now + ttl`` capped at the issuer's NotAfter."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (use datetime.now(UTC))")
    if ttl <= timedelta(0):
        raise ValueError("workload certificate lifetime must be positive")
    # Never hand out a certificate from an issuer that has expired (dapr/dapr#8557).
    if now >= issuer.not_after:
        raise CaInvalid(
            f"the issuer certificate expired at {issuer.not_after.isoformat()}; "
            "create a new certificate authority (`tether certs init --force`)"
        )
    not_after = min(now + ttl, issuer.not_after)
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(str(spiffe_id)),
        x509.DNSName(spiffe_id.peer_name()),
    ]
    names += [x509.DNSName(name) for name in extra_dns_names if name != spiffe_id.peer_name()]
    return (
        x509.CertificateBuilder()
        # SPIFFE X.509-SVIDs identify by SAN only; an empty subject then needs a critical SAN.
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - clock_skew)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_identifier(issuer), critical=False)
        .sign(issuer.private_key, signing_hash(issuer.private_key))
    )


def with_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _authority_key_identifier(issuer: Issuer) -> x509.AuthorityKeyIdentifier:
    # Copy the issuer's own key identifier so chain building works for CAs made elsewhere too.
    try:
        extensions = issuer.certificate.extensions
        ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
