"""A workload's own key and certificate signing request, and the checks on the
certificate a CA sends back: what a sidecar needs to get its certificate from a
Sentry without ever holding a CA key. Uses cryptography: run it in a child process
(see certs.issue), never in the sidecar itself."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.errors import CertError
from certs.renewal import Lifetime
from certs.spiffe import SpiffeId


def new_key_and_csr(spiffe_id: SpiffeId) -> tuple[bytes, bytes]:
    """A fresh key (PKCS#8 PEM) and a CSR for it (PEM) naming ``spiffe_id``.

    Sentry uses only the CSR's public key; the SANs are for CAs that read them.
    ECDSA P-256, as certs.workload (what every peer's TLS stack takes fastest)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(str(spiffe_id)),
                    x509.DNSName(spiffe_id.peer_name()),
                ]
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def check_leaf(leaf_pem: bytes, key_pem: bytes, expected: SpiffeId) -> Lifetime:
    """The leaf's validity window, once it is shown to be for our key and exactly
    ``expected``; a CertError saying what is wrong otherwise."""
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem)
    except ValueError as exc:
        raise CertError(f"the CA sent an unreadable certificate: {exc}") from exc
    key = serialization.load_pem_private_key(key_pem, password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != key.public_key().public_bytes(serialization.Encoding.DER, public):
        raise CertError("the CA sent a certificate for another key than the one requested")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if uris != [str(expected)]:
        raise CertError(
            f"the CA sent a certificate for {', '.join(uris) or 'no SPIFFE ID'}, not {expected}"
        )
    return Lifetime(leaf.not_valid_before_utc, leaf.not_valid_after_utc)
