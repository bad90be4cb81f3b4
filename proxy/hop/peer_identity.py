"""Strict peer identity on the sidecar hop, with mTLS on: which trust domains a
sidecar accepts, the callee's check of a caller's certificate (the internal
server's ``identify``) and the caller's check of a callee's (the lean client's
``verify_peer``). A refusal raises the lean gRPC stack's PeerRefused: the server
then answers every call of that connection UNAUTHENTICATED, the client closes the
connection before sending anything."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from certs.spiffe import SpiffeId
from certs.tls import PeerIdentityRefused, callee_spiffe_id, caller_spiffe_id
from proxy.core.access_policy import DEFAULT_TRUST_DOMAIN, AccessControlSpec
from proxy.grpcwire.peer import PeerRefused
from proxy.hop.header_rules import CallerIdentity


def accepted_trust_domains(
    own: str, access: AccessControlSpec | None, *, as_caller: bool = False
) -> frozenset[str]:
    """Our own trust domain and every one our access-control policies name; as a
    caller, also Dapr's default trust domain ``public``.

    Stricter than daprd, whose internal server takes any trust domain its anchors sign
    and leaves the rest to access control: a callee that writes a policy for a caller
    in another trust domain means to talk to it; any other is refused outright. A
    caller's policies are about who may call it, not whom it calls, so it also accepts
    callees in ``public``, where every app without ``accessControl.trustDomain`` is
    (Dapr's own example has an app in another trust domain call one in ``public``).
    """
    domains = {own, DEFAULT_TRUST_DOMAIN} if as_caller else {own}
    if access is not None:
        domains.add(access.trust_domain)
        domains.update(policy.trust_domain for policy in access.policies)
    return frozenset(domains)


def caller_identifier(accepted: frozenset[str]) -> Callable[[Any], CallerIdentity]:
    """The internal server's ``identify``: the caller's verified identity, or PeerRefused."""

    def identify(peercert: Mapping[str, Any] | None) -> CallerIdentity:
        try:
            found = caller_spiffe_id(peercert, accepted)
        except PeerIdentityRefused as exc:
            raise PeerRefused(f"client certificate: {exc}") from exc
        return CallerIdentity(found.app_id, found.namespace, found.trust_domain)

    return identify


def callee_verifier(expected: SpiffeId, accepted: frozenset[str]) -> Callable[[Any], None]:
    """The lean client's ``verify_peer`` for a connection to ``expected``'s sidecar."""

    def verify(peercert: Mapping[str, Any] | None) -> None:
        try:
            callee_spiffe_id(peercert, expected, accepted)
        except PeerIdentityRefused as exc:
            raise PeerRefused(f"server certificate: {exc}") from exc

    return verify
