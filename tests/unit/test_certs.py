"""certs: SPIFFE IDs, the local CA and workload certificates, with an injected clock."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.authority import CaFiles, Issuer, create_authority, load_issuer, write_authority
from certs.errors import CaInvalid, CaNotFound, CertError, InvalidSpiffeId
from certs.spiffe import SpiffeId, validate_app_id, validate_namespace
from certs.tls import channel_options_for_peer
from certs.workload import issue_workload_identity

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ORDERS = SpiffeId("public", "default", "orders")


@pytest.fixture(scope="module")
def authority() -> CaFiles:
    return create_authority("public", NOW)


@pytest.fixture
def ca_dir(tmp_path: Path, authority: CaFiles) -> Path:
    directory = tmp_path / "ca"
    write_authority(directory, authority)
    return directory


@pytest.fixture
def issuer(ca_dir: Path) -> Issuer:
    return load_issuer(ca_dir, NOW)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _chain(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


# --- SPIFFE IDs -------------------------------------------------------------------------------


def test_spiffe_id_formats_and_round_trips() -> None:
    assert str(ORDERS) == "spiffe://public/ns/default/orders"
    assert SpiffeId.parse(str(ORDERS)) == ORDERS
    odd = SpiffeId("cluster.local", "team-a", "Check_Out-2")
    assert SpiffeId.parse(str(odd)) == odd


def test_peer_name_ignores_trust_domain_and_keeps_case() -> None:
    name = ORDERS.peer_name()
    label, _, suffix = name.partition(".")
    assert suffix == "tether.internal"
    # One DNS label (LDH, at most 63 characters) that BoringSSL's hostname check accepts.
    assert len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum()
    assert label == label.lower()
    assert ORDERS.peer_name() == name  # stable
    other_domain = SpiffeId("example.org", "default", "orders")
    assert other_domain.peer_name() == name
    # DNS names compare without case, app IDs with it: "Orders" never passes for "orders".
    assert SpiffeId("public", "default", "Orders").peer_name() != name
    assert SpiffeId("public", "Default", "orders").peer_name() != name
    assert SpiffeId("public", "prod", "orders").peer_name() != name
    # No two (namespace, app ID) pairs share a name by moving the separator.
    assert SpiffeId("public", "a-b", "c").peer_name() != SpiffeId("public", "a", "b-c").peer_name()
    longest = SpiffeId("public", "n" * 63, "a" * 63).peer_name()
    assert len(longest.partition(".")[0]) <= 63


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://public/ns/default/orders",
        "SPIFFE://public/ns/default/orders",
        "spiffe://public/default/orders",
        "spiffe://public/ns/default",
        "spiffe://public/ns/default/orders/extra",
        "spiffe://public/ns/default/orders/",
        "spiffe://public/ns//orders",
        "spiffe:///ns/default/orders",
        "spiffe://Public/ns/default/orders",
        "spiffe://public:443/ns/default/orders",
        "spiffe://user@public/ns/default/orders",
        "spiffe://public/ns/default/orders?x=1",
        "spiffe://public/ns/default/orders#frag",
        "spiffe://public/ns/default/or%2Fders",
        "spiffe://public/ns/default/-orders",
        "spiffe://public/ns/default/" + "a" * 64,
    ],
)
def test_parse_rejects(uri: str) -> None:
    with pytest.raises(InvalidSpiffeId):
        SpiffeId.parse(uri)


@pytest.mark.parametrize("value", ["", "a.b", "a/b", "-a", "_a", "a b", "ä", "a" * 64])
def test_validate_app_id_and_namespace_reject(value: str) -> None:
    with pytest.raises(InvalidSpiffeId, match="app ID"):
        validate_app_id(value)
    with pytest.raises(InvalidSpiffeId, match="namespace"):
        validate_namespace(value)


@pytest.mark.parametrize("value", ["a", "orders", "Orders_2", "a-b", "9", "a" * 63])
def test_validate_app_id_accepts(value: str) -> None:
    validate_app_id(value)
    validate_namespace(value)


def test_constructor_validates() -> None:
    with pytest.raises(InvalidSpiffeId):
        SpiffeId("public", "default", "a.b")
    with pytest.raises(InvalidSpiffeId, match="trust domain"):
        SpiffeId("Bad Domain", "default", "orders")


# --- the certificate authority ----------------------------------------------------------------


def test_root_is_self_signed_ca(authority: CaFiles) -> None:
    root = _cert(authority.ca_cert_pem)
    assert root.subject == root.issuer
    assert (
        root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "tether root ca"
    )
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    root.verify_directly_issued_by(root)
    assert root.not_valid_before_utc <= NOW < root.not_valid_after_utc
    assert root.not_valid_after_utc == NOW + timedelta(days=365)


def test_issuer_chains_to_root_with_path_length_zero(authority: CaFiles) -> None:
    root, issuer = _cert(authority.ca_cert_pem), _cert(authority.issuer_cert_pem)
    issuer.verify_directly_issued_by(root)
    constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    assert issuer.not_valid_after_utc <= root.not_valid_after_utc


def test_issuer_never_outlives_root() -> None:
    files = create_authority("public", NOW, root_ttl=timedelta(days=10))
    root, issuer = _cert(files.ca_cert_pem), _cert(files.issuer_cert_pem)
    assert issuer.not_valid_after_utc == root.not_valid_after_utc


def test_create_authority_rejects_naive_now_and_bad_trust_domain() -> None:
    with pytest.raises(ValueError, match="timezone"):
        create_authority("public", datetime(2030, 1, 1))
    with pytest.raises(InvalidSpiffeId):
        create_authority("Not/A/Domain", NOW)


def test_write_authority_modes(tmp_path: Path, authority: CaFiles) -> None:
    directory = tmp_path / "nested" / "ca"
    write_authority(directory, authority)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "issuer.key").stat().st_mode) == 0o600
    assert (directory / "ca.crt").read_bytes() == authority.ca_cert_pem
    assert (directory / "issuer.crt").read_bytes() == authority.issuer_cert_pem
    assert (directory / "issuer.key").read_bytes() == authority.issuer_key_pem
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "issuer.crt", "issuer.key"]


def test_write_authority_refuses_to_overwrite(ca_dir: Path) -> None:
    other = create_authority("public", NOW)
    before = (ca_dir / "issuer.key").read_bytes()
    with pytest.raises(CertError, match="refusing"):
        write_authority(ca_dir, other)
    assert (ca_dir / "issuer.key").read_bytes() == before
    write_authority(ca_dir, other, overwrite=True)
    assert (ca_dir / "issuer.key").read_bytes() == other.issuer_key_pem
    assert stat.S_IMODE((ca_dir / "issuer.key").stat().st_mode) == 0o600


def test_load_issuer(issuer: Issuer, authority: CaFiles) -> None:
    assert issuer.certificate == _cert(authority.issuer_cert_pem)
    assert issuer.trust_bundle_pem == authority.ca_cert_pem
    assert issuer.not_after == issuer.certificate.not_valid_after_utc


def test_load_issuer_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CaNotFound, match="tether certs init") as caught:
        load_issuer(missing, NOW)
    assert str(missing) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_load_issuer_missing_key(ca_dir: Path) -> None:
    (ca_dir / "issuer.key").unlink()
    with pytest.raises(CaNotFound, match=r"issuer\.key.*tether certs init"):
        load_issuer(ca_dir, NOW)


def test_load_issuer_expired(ca_dir: Path) -> None:
    with pytest.raises(CaInvalid, match="expired"):
        load_issuer(ca_dir, NOW + timedelta(days=366))


def test_load_issuer_not_yet_valid(ca_dir: Path) -> None:
    with pytest.raises(CaInvalid, match="not valid until"):
        load_issuer(ca_dir, NOW - timedelta(days=1))


def test_load_issuer_key_mismatch(ca_dir: Path) -> None:
    (ca_dir / "issuer.key").write_bytes(create_authority("public", NOW).issuer_key_pem)
    with pytest.raises(CaInvalid, match="does not match"):
        load_issuer(ca_dir, NOW)


def test_load_issuer_foreign_root(ca_dir: Path) -> None:
    (ca_dir / "ca.crt").write_bytes(create_authority("public", NOW).ca_cert_pem)
    with pytest.raises(CaInvalid, match="not signed by a root"):
        load_issuer(ca_dir, NOW)


def test_load_issuer_accepts_a_bundle_of_roots(ca_dir: Path, authority: CaFiles) -> None:
    # During a root rotation the bundle holds the old and the new root.
    bundle = create_authority("public", NOW).ca_cert_pem + authority.ca_cert_pem
    (ca_dir / "ca.crt").write_bytes(bundle)
    assert load_issuer(ca_dir, NOW).trust_bundle_pem == bundle


@pytest.mark.parametrize("name", ["ca.crt", "issuer.crt", "issuer.key"])
def test_load_issuer_garbage(ca_dir: Path, name: str) -> None:
    (ca_dir / name).write_bytes(b"not pem at all")
    with pytest.raises(CaInvalid, match=name.replace(".", r"\.")) as caught:
        load_issuer(ca_dir, NOW)
    assert "\n" not in str(caught.value)


# --- workload certificates --------------------------------------------------------------------


def test_workload_certificate_contents(issuer: Issuer) -> None:
    identity = issue_workload_identity(issuer, ORDERS, NOW)
    leaf, *rest = _chain(identity.certificate_chain_pem)
    assert [c.subject for c in rest] == [issuer.certificate.subject]
    leaf.verify_directly_issued_by(issuer.certificate)
    assert identity.spiffe_id == ORDERS
    assert identity.trust_bundle_pem == issuer.trust_bundle_pem

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(ORDERS)]
    assert san.get_values_for_type(x509.DNSName) == [ORDERS.peer_name()]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    key_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature
    assert not key_usage.key_cert_sign
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


def test_workload_private_key_matches_leaf(issuer: Issuer) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    identity = issue_workload_identity(issuer, ORDERS, NOW)
    key = load_pem_private_key(identity.private_key_pem, password=None)
    assert key.public_key() == _chain(identity.certificate_chain_pem)[0].public_key()


def test_workload_validity_window(issuer: Issuer) -> None:
    identity = issue_workload_identity(
        issuer, ORDERS, NOW, ttl=timedelta(hours=2), clock_skew=timedelta(minutes=5)
    )
    leaf = _chain(identity.certificate_chain_pem)[0]
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=2)
    assert identity.not_after == NOW + timedelta(hours=2)


def test_workload_default_validity_is_daprs(issuer: Issuer) -> None:
    leaf = _chain(issue_workload_identity(issuer, ORDERS, NOW).certificate_chain_pem)[0]
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=15)
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=24)


def test_workload_not_after_capped_at_issuer_expiry(issuer: Issuer) -> None:
    late = issuer.not_after - timedelta(hours=1)
    identity = issue_workload_identity(issuer, ORDERS, late)
    assert identity.not_after == issuer.not_after
    assert _chain(identity.certificate_chain_pem)[0].not_valid_after_utc == issuer.not_after


def test_workload_refused_from_expired_issuer(issuer: Issuer) -> None:
    with pytest.raises(CaInvalid, match="expired"):
        issue_workload_identity(issuer, ORDERS, issuer.not_after)


def test_each_identity_has_a_fresh_key(issuer: Issuer) -> None:
    first = issue_workload_identity(issuer, ORDERS, NOW)
    second = issue_workload_identity(issuer, ORDERS, NOW)
    assert first.private_key_pem != second.private_key_pem


# --- gRPC glue without sockets ----------------------------------------------------------------


def test_channel_options_pin_peer_name() -> None:
    options = dict(channel_options_for_peer(ORDERS))
    assert options["grpc.ssl_target_name_override"] == ORDERS.peer_name()
    assert options["grpc.default_authority"] == ORDERS.peer_name()
