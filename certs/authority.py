"""A local certificate authority: a root CA and an issuer, stored in Dapr's file layout."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from certs.errors import CaInvalid, CaNotFound, CertError
from certs.spiffe import validate_trust_domain

# Dapr Sentry's file names, so a Dapr issuer folder can be reused as is.
CA_CERT_FILE = "ca.crt"
ISSUER_CERT_FILE = "issuer.crt"
ISSUER_KEY_FILE = "issuer.key"
DEFAULT_ROOT_TTL = timedelta(days=365)
DEFAULT_ISSUER_TTL = timedelta(days=365)
# Back-date CA certificates so peers whose clocks lag a little still accept them.
CA_BACKDATE = timedelta(minutes=15)


@dataclass(frozen=True)
class CaFiles:
    ca_cert_pem: bytes
    issuer_cert_pem: bytes
    issuer_key_pem: bytes


@dataclass(frozen=True)
class Issuer:
    """What issuing a workload certificate needs: the issuer and the roots peers trust."""

    certificate: x509.Certificate
    private_key: CertificateIssuerPrivateKeyTypes
    # issuer.crt as stored (the issuer, maybe with intermediates), appended to each leaf.
    chain_pem: bytes
    trust_bundle_pem: bytes

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


def signing_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """Ed25519 and Ed448 sign without a separate digest; every other key uses SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (use datetime.now(UTC))")


def _ca_certificate(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_name: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
    extra: list[x509.ExtensionType],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, hashes.SHA256())


def create_authority(
    trust_domain: str,
    now: datetime,
    root_ttl: timedelta = DEFAULT_ROOT_TTL,
    issuer_ttl: timedelta = DEFAULT_ISSUER_TTL,
) -> CaFiles:
    """A self-signed root CA and an issuer CA (path length 0) signed by it, ECDSA P-256."""
    _require_aware(now)
    validate_trust_domain(trust_domain)
    if root_ttl <= timedelta(0) or issuer_ttl <= timedelta(0):
        raise ValueError("CA lifetimes must be positive")
    not_before = now - CA_BACKDATE
    root_not_after = now + root_ttl
    spiffe_san: list[x509.ExtensionType] = [
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")])
    ]

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, "tether root ca"),
        ]
    )
    root = _ca_certificate(
        subject=root_name,
        public_key=root_key.public_key(),
        issuer_name=root_name,
        signer=root_key,
        not_before=not_before,
        not_after=root_not_after,
        path_length=None,
        extra=spiffe_san,
    )

    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, "tether issuer ca"),
        ]
    )
    # An issuer must not outlive the root that vouches for it.
    issuer_not_after = min(now + issuer_ttl, root_not_after)
    issuer = _ca_certificate(
        subject=issuer_name,
        public_key=issuer_key.public_key(),
        issuer_name=root_name,
        signer=root_key,
        not_before=not_before,
        not_after=issuer_not_after,
        path_length=0,
        extra=spiffe_san,
    )

    return CaFiles(
        ca_cert_pem=root.public_bytes(serialization.Encoding.PEM),
        issuer_cert_pem=issuer.public_bytes(serialization.Encoding.PEM),
        issuer_key_pem=issuer_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # A crash mid-write must never leave a truncated key or a cert that does not match it.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_authority(directory: Path, files: CaFiles, overwrite: bool = False) -> None:
    """Write ca.crt, issuer.crt and issuer.key (0600) into ``directory`` (created 0700)."""
    targets = {
        CA_CERT_FILE: (files.ca_cert_pem, 0o644),
        ISSUER_CERT_FILE: (files.issuer_cert_pem, 0o644),
        ISSUER_KEY_FILE: (files.issuer_key_pem, 0o600),
    }
    existing = [name for name in targets if (directory / name).exists()]
    if existing and not overwrite:
        raise CertError(
            f"{directory} already holds {', '.join(existing)}; "
            "refusing to replace a certificate authority (use --force to overwrite)"
        )
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True)
            # mkdir's mode is filtered by the umask; the key folder must stay private.
            directory.chmod(0o700)
        for name, (data, mode) in targets.items():
            _write_atomically(directory / name, data, mode)
    except OSError as exc:
        raise CertError(f"cannot write the certificate authority to {directory}: {exc}") from exc


def _read(directory: Path, name: str) -> bytes:
    try:
        return (directory / name).read_bytes()
    except OSError as exc:
        raise CaInvalid(f"cannot read {directory / name}: {exc.strerror or exc}") from exc


def load_issuer(directory: Path, now: datetime) -> Issuer:
    """Load and check the issuer in ``directory``; raise CaNotFound or CaInvalid."""
    _require_aware(now)
    names = (CA_CERT_FILE, ISSUER_CERT_FILE, ISSUER_KEY_FILE)
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise CaNotFound(
            f"no certificate authority in {directory} (missing {', '.join(missing)}); "
            f"run `tether certs init --dir {directory}` to create one"
        )
    root_pem, chain_pem, key_pem = (_read(directory, name) for name in names)

    try:
        roots = x509.load_pem_x509_certificates(root_pem)
    except ValueError as exc:
        raise CaInvalid(f"{directory / CA_CERT_FILE} is not a PEM certificate: {exc}") from exc
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CaInvalid(f"{directory / ISSUER_CERT_FILE} is not a PEM certificate: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CaInvalid(
            f"{directory / ISSUER_KEY_FILE} is not an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise CaInvalid(f"{directory / ISSUER_KEY_FILE} holds a key type that cannot sign")

    certificate = chain[0]
    if certificate.public_key() != key.public_key():
        raise CaInvalid(
            f"{directory / ISSUER_KEY_FILE} does not match the certificate in "
            f"{directory / ISSUER_CERT_FILE}"
        )
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        is_ca = constraints.value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CaInvalid(f"{directory / ISSUER_CERT_FILE} is not a CA certificate")

    _check_validity(certificate, directory / ISSUER_CERT_FILE, "issuer", now)
    for child, parent in pairwise(chain):
        if not _directly_issued_by(child, parent):
            raise CaInvalid(
                f"the certificates in {directory / ISSUER_CERT_FILE} do not form a chain"
            )
    # The chain must end at one of the trusted roots, else peers would reject every leaf.
    top = chain[-1]
    anchor = next((root for root in roots if root == top or _directly_issued_by(top, root)), None)
    if anchor is None:
        raise CaInvalid(
            f"{directory / ISSUER_CERT_FILE} was not signed by a root in {directory / CA_CERT_FILE}"
        )
    _check_validity(anchor, directory / CA_CERT_FILE, "root", now)

    return Issuer(
        certificate=certificate,
        private_key=key,
        chain_pem=chain_pem,
        trust_bundle_pem=root_pem,
    )


def _directly_issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_validity(certificate: x509.Certificate, path: Path, what: str, now: datetime) -> None:
    if now >= certificate.not_valid_after_utc:
        raise CaInvalid(
            f"the {what} certificate in {path} expired at "
            f"{certificate.not_valid_after_utc.isoformat()}; create a new one "
            "(`tether certs init --force`)"
        )
    if now < certificate.not_valid_before_utc:
        raise CaInvalid(
            f"the {what} certificate in {path} is not valid until "
            f"{certificate.not_valid_before_utc.isoformat()}; check the system clock"
        )
