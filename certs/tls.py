"""gRPC glue: mTLS credentials from a workload identity, and the peer's SPIFFE ID."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence

import grpc

from certs.errors import InvalidSpiffeId
from certs.identity import WorkloadIdentity
from certs.spiffe import SpiffeId

# gRPC core fills this in during the handshake when the leaf has exactly one SPIFFE URI SAN.
_PEER_SPIFFE_ID = "peer_spiffe_id"
_PEER_PEM_CERT = "x509_pem_cert"


def server_credentials(identity: WorkloadIdentity) -> grpc.ServerCredentials:
    """Server side of mTLS: present our chain, and demand a client chain ending at our roots."""
    return grpc.ssl_server_credentials(
        [(identity.private_key_pem, identity.certificate_chain_pem)],
        root_certificates=identity.trust_bundle_pem,
        require_client_auth=True,
    )


def channel_credentials(identity: WorkloadIdentity) -> grpc.ChannelCredentials:
    """Client side of mTLS; pair with channel_options_for_peer to pin the callee's identity."""
    return grpc.ssl_channel_credentials(
        root_certificates=identity.trust_bundle_pem,
        private_key=identity.private_key_pem,
        certificate_chain=identity.certificate_chain_pem,
    )


def channel_options_for_peer(expected: SpiffeId) -> list[tuple[str, str]]:
    """Channel options that make the handshake fail unless the callee is ``expected``.

    gRPC's hostname check runs against the override name, which our issuer binds to the
    SPIFFE ID as a DNS SAN. The authority is set to the same name so that SNI and
    ``:authority`` do not depend on the address the channel happened to dial.
    """
    name = expected.peer_name()
    return [("grpc.ssl_target_name_override", name), ("grpc.default_authority", name)]


def client_ssl_context(identity: WorkloadIdentity) -> ssl.SSLContext:
    """Client side of mTLS for an ``ssl``-based HTTP/2 client (ALPN "h2").

    The server's chain must end at our trust bundle and be valid for the name given
    as ``server_hostname``: pass ``SpiffeId.peer_name()`` of the callee to pin it, as
    channel_options_for_peer does for grpcio.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=identity.trust_bundle_pem.decode("ascii"))
    _load_chain(context, identity)
    context.set_alpn_protocols(["h2"])
    return context


def _load_chain(context: ssl.SSLContext, identity: WorkloadIdentity) -> None:
    # ssl loads keys from files only: an anonymous in-memory file keeps the key off disk.
    fd = os.memfd_create("tether-identity", os.MFD_CLOEXEC)
    try:
        os.write(fd, identity.certificate_chain_pem + b"\n" + identity.private_key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def peer_spiffe_id(auth_context: Mapping[str, Sequence[bytes]]) -> SpiffeId | None:
    """The caller's SPIFFE ID from ``context.auth_context()``; None without a usable client cert.

    A certificate whose URI SAN is not a tether SPIFFE ID counts as no identity, so access
    control applies its default action, as Dapr does.
    """
    uris = auth_context.get(_PEER_SPIFFE_ID)
    if uris:
        return _parse_one([uri.decode("utf-8", "replace") for uri in uris])
    pems = auth_context.get(_PEER_PEM_CERT)
    if not pems:
        return None
    # Older gRPC cores do not export peer_spiffe_id; read the leaf's URI SAN ourselves.
    # (cryptography is imported only here: a sidecar on a current core never loads it.)
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(pems[0])
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris_in_cert = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return _parse_one([uri for uri in uris_in_cert if uri.startswith("spiffe://")])


def _parse_one(uris: list[str]) -> SpiffeId | None:
    # SPIFFE allows exactly one SPIFFE ID per certificate; more is ambiguous, so none is trusted.
    if len(uris) != 1:
        return None
    try:
        return SpiffeId.parse(uris[0])
    except InvalidSpiffeId:
        return None
