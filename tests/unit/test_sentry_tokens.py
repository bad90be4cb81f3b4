"""Sentry's tokens: only the issuer key makes one, and one names exactly one identity."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from certs.authority import create_authority
from certs.spiffe import SpiffeId
from sentry.tokens import TokenRefused, check_token_for, make_token, read_token

NOW = 1_800_000_000.0
ORDERS = SpiffeId("public", "default", "orders")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_a_token_names_one_spiffe_id_an_issue_time_and_an_expiry(key) -> None:
    token = make_token(key, ORDERS, NOW, 3600)
    assert "\n" not in token and token.count(".") == 2
    claims = check_token_for(token, key.public_key(), ORDERS, NOW + 10)
    assert (claims.spiffe_id, claims.issued_at, claims.expires_at) == (
        ORDERS,
        int(NOW),
        int(NOW) + 3600,
    )
    assert _claims(token)["sub"] == "spiffe://public/ns/default/orders"


@pytest.mark.parametrize(
    "private_key",
    [
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["p384", "p521", "rsa", "ed25519"],
)
def test_every_issuer_key_type_signs_and_verifies(private_key) -> None:
    token = make_token(private_key, ORDERS, NOW, 60)
    assert read_token(token, private_key.public_key(), NOW).spiffe_id == ORDERS


def test_the_issuer_from_certs_init_signs_tokens() -> None:
    from cryptography.hazmat.primitives import serialization

    files = create_authority("public", datetime.fromtimestamp(NOW, UTC))
    private = serialization.load_pem_private_key(files.issuer_key_pem, None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    token = make_token(private, ORDERS, NOW, 60)
    assert read_token(token, private.public_key(), NOW).spiffe_id == ORDERS


def test_expired_refused(key) -> None:
    token = make_token(key, ORDERS, NOW, 60)
    with pytest.raises(TokenRefused, match="expired"):
        read_token(token, key.public_key(), NOW + 60)


def test_issued_in_the_future_refused_beyond_the_leeway(key) -> None:
    token = make_token(key, ORDERS, NOW + 600, 3600)
    with pytest.raises(TokenRefused, match="future"):
        read_token(token, key.public_key(), NOW, leeway=300)
    assert read_token(token, key.public_key(), NOW, leeway=900).spiffe_id == ORDERS


def test_another_key_refused(key) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = make_token(other, ORDERS, NOW, 60)
    with pytest.raises(TokenRefused, match="signature"):
        read_token(token, key.public_key(), NOW)


def test_tampered_claims_refused(key) -> None:
    header, _, signature = make_token(key, ORDERS, NOW, 60).split(".")
    forged = {"sub": "spiffe://public/ns/default/payments", "aud": "tether-sentry",
              "iat": int(NOW), "exp": int(NOW) + 60}  # fmt: skip
    token = f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"
    with pytest.raises(TokenRefused, match="signature"):
        read_token(token, key.public_key(), NOW)


def test_tampered_signature_refused(key) -> None:
    token = make_token(key, ORDERS, NOW, 60)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenRefused):
        read_token(flipped, key.public_key(), NOW)


def test_alg_none_and_other_algorithms_refused(key) -> None:
    _, claims, _ = make_token(key, ORDERS, NOW, 60).split(".")
    for alg in ("none", "HS256", "RS256"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        with pytest.raises(TokenRefused, match="key type"):
            read_token(f"{header}.{claims}.", key.public_key(), NOW)


@pytest.mark.parametrize(
    "requested, what",
    [
        (SpiffeId("public", "default", "payments"), "app ID"),
        (SpiffeId("public", "default", "Orders"), "app ID"),
        (SpiffeId("public", "prod", "orders"), "namespace"),
        (SpiffeId("example.org", "default", "orders"), "trust domain"),
    ],
)
def test_another_identity_refused(key, requested: SpiffeId, what: str) -> None:
    token = make_token(key, ORDERS, NOW, 60)
    with pytest.raises(TokenRefused, match=f"another {what}") as refused:
        check_token_for(token, key.public_key(), requested, NOW)
    assert token not in str(refused.value) and "orders" not in str(refused.value)


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c.d", "...", "!!.??.##", "eyJ.eyJ.", "x" * 10000,
     _b64(b"[]") + "." + _b64(b"{}") + ".", _b64(b"not json") + ".e30.AAAA"],
)  # fmt: skip
def test_garbage_refused(key, garbage: str) -> None:
    with pytest.raises(TokenRefused):
        read_token(garbage, key.public_key(), NOW)


def test_signed_claims_without_audience_or_times_refused(key) -> None:
    # Signed by the right key but missing claims: still refused.
    from sentry.tokens import _sign

    header = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    for claims in ({"sub": str(ORDERS), "iat": 1, "exp": 2**40},
                   {"sub": str(ORDERS), "aud": "tether-sentry", "exp": 2**40},
                   {"sub": "spiffe://x/y", "aud": "tether-sentry", "iat": 1, "exp": 2**40},
                   {"aud": "tether-sentry", "iat": 1, "exp": True}):  # fmt: skip
        body = _b64(json.dumps(claims).encode())
        signature = _b64(_sign(key, f"{header}.{body}".encode()))
        with pytest.raises(TokenRefused):
            read_token(f"{header}.{body}.{signature}", key.public_key(), NOW)
