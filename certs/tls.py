"""TLS glue: mTLS credentials from a workload identity (grpcio's for the client,
ssl's for the lean server and client), and the strict checks of the SPIFFE ID a
verified peer certificate carries."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import grpc

from certs.errors import CertError, InvalidSpiffeId
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
    SPIFFE ID as a DNS SAN (a digest of the exact ``/ns/<ns>/<app>``). The authority is
    set to the same name so that SNI and ``:authority`` do not depend on the address the
    channel happened to dial. grpc-python offers no hook after the handshake, so this
    is all a grpcio channel checks: the chain and that name; not the trust domain, nor
    that the certificate holds exactly one URI SAN (the lean client checks both, see
    callee_spiffe_id).
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


class PeerIdentityRefused(CertError):
    """A peer's certificate carries no SPIFFE ID we accept; the message says why."""


def peer_spiffe_id(peercert: Mapping[str, Any] | None) -> SpiffeId:
    """The one SPIFFE ID in a verified peer certificate (``getpeercert()``).

    An X.509-SVID carries exactly one URI SAN, its SPIFFE ID: none, several (of any
    scheme: which one would be the identity?) or one that is not
    ``spiffe://<td>/ns/<ns>/<app>`` is refused, never read as "no identity" (that
    would let a caller's own ``dapr-caller-app-id`` through). Raises PeerIdentityRefused.
    """
    if not peercert:
        raise PeerIdentityRefused("no certificate")
    uris = [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]
    if not uris:
        raise PeerIdentityRefused("no SPIFFE ID (the certificate has no URI SAN)")
    if len(uris) > 1:
        spiffe = all(uri.lower().startswith("spiffe:") for uri in uris)
        what = "SPIFFE IDs" if spiffe else "URI SANs"
        shown = ", ".join(uris[:4]) + (", ..." if len(uris) > 4 else "")
        raise PeerIdentityRefused(f"{len(uris)} {what} ({shown}); exactly one is allowed")
    try:
        return SpiffeId.parse(uris[0])
    except InvalidSpiffeId as exc:
        raise PeerIdentityRefused(f"not a valid SPIFFE ID: {exc}") from exc


def check_trust_domain(found: SpiffeId, accepted: frozenset[str]) -> None:
    """Raise PeerIdentityRefused unless ``found`` is in one of the ``accepted`` trust domains."""
    if found.trust_domain not in accepted:
        raise PeerIdentityRefused(
            f"{found}: trust domain {found.trust_domain!r} not accepted "
            f"(accepted: {', '.join(sorted(accepted))})"
        )


def caller_spiffe_id(peercert: Mapping[str, Any] | None, accepted: frozenset[str]) -> SpiffeId:
    """Callee side: the caller's SPIFFE ID, in an accepted trust domain. Raises
    PeerIdentityRefused."""
    found = peer_spiffe_id(peercert)
    check_trust_domain(found, accepted)
    return found


def callee_spiffe_id(
    peercert: Mapping[str, Any] | None, expected: SpiffeId, accepted: frozenset[str]
) -> SpiffeId:
    """Caller side: the callee's SPIFFE ID, which must name ``expected``'s namespace and
    app ID exactly (case-sensitive; any accepted trust domain, since a caller knows the
    target's namespace and app ID only). Raises PeerIdentityRefused."""
    found = peer_spiffe_id(peercert)
    if (found.namespace, found.app_id) != (expected.namespace, expected.app_id):
        raise PeerIdentityRefused(
            f"the certificate names {found}, not /ns/{expected.namespace}/{expected.app_id}"
        )
    check_trust_domain(found, accepted)
    return found
