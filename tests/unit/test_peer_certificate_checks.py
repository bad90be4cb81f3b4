"""Strict peer identity: what a verified certificate must say (certs.tls), on
``getpeercert()``-shaped dicts and on real certificates, and the sets of trust
domains a sidecar accepts (proxy.hop.peer_identity)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certs.authority import Issuer, create_authority, load_issuer, write_authority
from certs.spiffe import SpiffeId
from certs.tls import (
    PeerIdentityRefused,
    callee_spiffe_id,
    caller_spiffe_id,
    peer_spiffe_id,
)
from certs.workload import issue_workload_identity
from proxy.core.access_policy import AccessControlSpec, AppPolicySpec
from proxy.grpcwire.peer import PeerRefused
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.peer_identity import accepted_trust_domains, callee_verifier, caller_identifier
from tests.crafted_certs import as_peercert, crafted_identity

ORDERS = SpiffeId("public", "default", "orders")
PUBLIC = frozenset({"public"})
NOW = datetime.now(UTC)


def cert(*names: tuple[str, str]) -> dict[str, object]:
    # Shaped as ssl's getpeercert() gives it.
    return {"subject": ((("commonName", "x"),),), "subjectAltName": names}


URI = ("URI", str(ORDERS))
DNS = ("DNS", ORDERS.peer_name())


def refusal(peercert: Any) -> str:
    with pytest.raises(PeerIdentityRefused) as caught:
        peer_spiffe_id(peercert)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_one_spiffe_id_is_the_identity() -> None:
    assert peer_spiffe_id(cert(DNS, URI)) == ORDERS
    assert peer_spiffe_id(cert(URI)) == ORDERS


def test_no_certificate_or_no_uri_is_refused() -> None:
    assert refusal(None) == "no certificate"
    assert refusal({}) == "no certificate"
    assert refusal(cert(DNS)).startswith("no SPIFFE ID")
    assert refusal(cert()).startswith("no SPIFFE ID")


def test_several_uris_are_refused_whatever_their_scheme() -> None:
    two = refusal(cert(URI, ("URI", "spiffe://public/ns/default/admin")))
    assert two.startswith("2 SPIFFE IDs (spiffe://public/ns/default/orders, ")
    assert "exactly one is allowed" in two
    # Not "the spiffe one wins": an SVID has exactly one URI SAN (SPIFFE X.509-SVID 4.1).
    mixed = refusal(cert(URI, ("URI", "https://example.org/")))
    assert mixed.startswith("2 URI SANs")


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://public/not/tether",  # a non-tether SPIFFE path
        "spiffe://public/ns/a/sa/b",
        "spiffe://Public/ns/default/orders",  # trust domains are lower-case
        "SPIFFE://public/ns/default/orders",
        "https://example.org/ns/default/orders",
        "spiffe://public/ns/default/or.ders",
    ],
)
def test_invalid_spiffe_ids_are_refused(uri: str) -> None:
    assert refusal(cert(("URI", uri))).startswith("not a valid SPIFFE ID: ")


def test_caller_trust_domain_must_be_accepted() -> None:
    assert caller_spiffe_id(cert(URI), PUBLIC) == ORDERS
    foreign = cert(("URI", "spiffe://evil.example/ns/default/orders"))
    with pytest.raises(PeerIdentityRefused) as caught:
        caller_spiffe_id(foreign, frozenset({"public", "corp"}))
    assert str(caught.value) == (
        "spiffe://evil.example/ns/default/orders: trust domain 'evil.example' not accepted "
        "(accepted: corp, public)"
    )


def test_callee_must_be_exactly_the_expected_app() -> None:
    assert callee_spiffe_id(cert(URI, DNS), ORDERS, PUBLIC) == ORDERS
    # Any accepted trust domain: the caller knows namespace and app ID only.
    other = SpiffeId("corp", "default", "orders")
    assert callee_spiffe_id(cert(("URI", str(other))), ORDERS, frozenset({"public", "corp"}))
    for wrong in ("spiffe://public/ns/default/Orders", "spiffe://public/ns/Default/orders"):
        with pytest.raises(PeerIdentityRefused, match="not /ns/default/orders"):
            callee_spiffe_id(cert(("URI", wrong)), ORDERS, PUBLIC)
    with pytest.raises(PeerIdentityRefused, match="trust domain 'corp' not accepted"):
        callee_spiffe_id(cert(("URI", str(other))), ORDERS, PUBLIC)
    with pytest.raises(PeerIdentityRefused, match=r"^2 SPIFFE IDs"):
        callee_spiffe_id(cert(URI, URI), ORDERS, PUBLIC)


def test_accepted_trust_domains() -> None:
    assert accepted_trust_domains("public", None) == PUBLIC
    spec = AccessControlSpec(
        "deny",
        "public",
        (
            AppPolicySpec("checkout", "default", "corp", "allow"),
            AppPolicySpec("billing", "default", "public", "allow"),
        ),
    )
    assert accepted_trust_domains("public", spec) == frozenset({"public", "corp"})
    # A caller also accepts callees in Dapr's default trust domain.
    assert accepted_trust_domains("corp", None) == frozenset({"corp"})
    assert accepted_trust_domains("corp", None, as_caller=True) == frozenset({"corp", "public"})


def test_hop_checks_raise_the_wire_refusal() -> None:
    identify = caller_identifier(PUBLIC)
    assert identify(cert(URI)) == CallerIdentity("orders", "default", "public")
    with pytest.raises(PeerRefused, match=r"^client certificate: no SPIFFE ID"):
        identify(cert(DNS))
    verify = callee_verifier(ORDERS, PUBLIC)
    verify(cert(URI, DNS))
    with pytest.raises(PeerRefused, match=r"^server certificate: the certificate names"):
        callee_verifier(SpiffeId("public", "default", "Orders"), PUBLIC)(cert(URI))


# --- real certificates, decoded by ssl as a handshake would ----------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    directory = tmp_path_factory.mktemp("ca")
    write_authority(directory, create_authority("public", NOW))
    return load_issuer(directory, NOW)


def test_issued_certificate_passes(issuer: Issuer, tmp_path: Path) -> None:
    identity = issue_workload_identity(issuer, ORDERS, NOW)
    peercert = as_peercert(identity, tmp_path)
    assert callee_spiffe_id(peercert, ORDERS, PUBLIC) == ORDERS
    assert caller_spiffe_id(peercert, PUBLIC) == ORDERS


@pytest.mark.parametrize(
    ("uris", "reason"),
    [
        ([], "no SPIFFE ID"),
        ([str(ORDERS), "spiffe://public/ns/default/admin"], "2 SPIFFE IDs"),
        (["spiffe://public/orders"], "not a valid SPIFFE ID"),
        (["spiffe://evil.example/ns/default/orders"], "trust domain 'evil.example' not accepted"),
        (["spiffe://public/ns/default/Orders"], "not /ns/default/orders"),
    ],
)
def test_crafted_certificates_are_refused(
    issuer: Issuer, tmp_path: Path, uris: list[str], reason: str
) -> None:
    identity = crafted_identity(issuer, uris, [ORDERS.peer_name()], NOW)
    with pytest.raises(PeerIdentityRefused, match=reason):
        callee_spiffe_id(as_peercert(identity, tmp_path), ORDERS, PUBLIC)
