"""Workload certificates with crafted SANs, signed by a real issuer (the same CA as
the sidecars under test), for the strict peer-identity tests: the chain is always
valid, so only what the certificate *says* can get it refused."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.authority import Issuer, load_issuer, signing_hash
from certs.identity import WorkloadIdentity
from certs.spiffe import SpiffeId


def crafted_identity(
    issuer: Issuer,
    uris: list[str],
    dns_names: list[str],
    now: datetime | None = None,
) -> WorkloadIdentity:
    """A leaf with exactly these URI and DNS SANs (no SAN extension when both are empty)."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    names += [x509.DNSName(name) for name in dns_names]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "crafted")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    leaf = builder.sign(issuer.private_key, signing_hash(issuer.private_key))
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    chain = issuer.chain_pem if issuer.chain_pem.endswith(b"\n") else issuer.chain_pem + b"\n"
    return WorkloadIdentity(
        spiffe_id=SpiffeId("crafted", "crafted", "crafted"),  # not what the certificate says
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_chain_pem=pem + chain,
        trust_bundle_pem=issuer.trust_bundle_pem,
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(hours=1),
    )


def crafted_from_dir(certs_dir: Path, uris: list[str], dns_names: list[str]) -> WorkloadIdentity:
    """``crafted_identity`` signed by the CA in ``certs_dir`` (``tether certs init``)."""
    now = datetime.now(UTC)
    return crafted_identity(load_issuer(certs_dir, now), uris, dns_names, now)


def as_peercert(identity: WorkloadIdentity, tmp: Path) -> dict[str, Any]:
    """The leaf as ``SSLObject.getpeercert()`` shows it (ssl's own decoder)."""
    path = tmp / "leaf.pem"
    leaf = identity.certificate_chain_pem.split(b"-----END CERTIFICATE-----")[0]
    path.write_bytes(leaf + b"-----END CERTIFICATE-----\n")
    decoded: dict[str, Any] = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    return decoded
