"""TLS glue: mTLS credentials from a workload identity (grpcio's for the client,
ssl's for the lean server), and the peer's SPIFFE ID."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import grpc

from certs.errors import InvalidSpiffeId
from certs.identity import WorkloadIdentity
from certs.spiffe import SpiffeId


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


def server_ssl_context(identity: WorkloadIdentity) -> ssl.SSLContext:
    """Server side of mTLS for the lean gRPC server: our chain, a client chain ending
    at our roots demanded, TLS 1.2 or later, ALPN "h2" (gRPC clients insist on it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=identity.trust_bundle_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    _load_chain(context, identity)
    return context


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


def peer_certificate_spiffe_id(peercert: Mapping[str, Any] | None) -> SpiffeId | None:
    """The peer's SPIFFE ID from ``SSLObject.getpeercert()``; None without a usable one.

    A certificate whose URI SAN is not a tether SPIFFE ID counts as no identity, so access
    control applies its default action, as Dapr does.
    """
    if not peercert:
        return None
    names = peercert.get("subjectAltName", ())
    return _parse_one(
        [value for kind, value in names if kind == "URI" and value.startswith("spiffe://")]
    )


def _parse_one(uris: list[str]) -> SpiffeId | None:
    # SPIFFE allows exactly one SPIFFE ID per certificate; more is ambiguous, so none is trusted.
    if len(uris) != 1:
        return None
    try:
        return SpiffeId.parse(uris[0])
    except InvalidSpiffeId:
        return None
