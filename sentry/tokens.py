"""Tokens that bind a sidecar to one SPIFFE ID: compact JWS (a JWT) signed with the
issuer's private key and checked with the issuer certificate's public key, so only a
holder of ``issuer.key`` can mint one and Sentry needs no other secret.

Claims: ``sub`` (the SPIFFE ID), ``aud`` (``tether-sentry``), ``iat`` and ``exp``
(seconds since the epoch). The algorithm follows from the key (ES256/384/512, RS256,
EdDSA); a token whose header names another one is refused, so ``alg`` is never trusted.
Reasons for a refusal never quote the token.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from certs.errors import InvalidSpiffeId
from certs.spiffe import SpiffeId

AUDIENCE = "tether-sentry"
# A sidecar sends its token at every renewal (about every 12 hours with Dapr's 24h
# certificates), so a token must outlive the sidecar's run: 30 days, after which an
# operator writes a fresh one to the file (the sidecar reads it at each renewal).
DEFAULT_TTL = 30 * 24 * 3600.0
_MAX_TOKEN = 8192  # far above a real token; refuses junk before any decoding work

SigningKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
VerifyingKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


class TokenRefused(Exception):
    """A token is malformed, forged, expired or names another identity; the message says which."""


@dataclass(frozen=True)
class TokenClaims:
    spiffe_id: SpiffeId
    issued_at: int
    expires_at: int


_EC_HASHES: dict[str, tuple[str, Callable[[], hashes.HashAlgorithm], int]] = {
    "secp256r1": ("ES256", hashes.SHA256, 32),
    "secp384r1": ("ES384", hashes.SHA384, 48),
    "secp521r1": ("ES512", hashes.SHA512, 66),
}


def algorithm_for(key: VerifyingKey) -> str:
    """The JWS ``alg`` the issuer's key type implies."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        entry = _EC_HASHES.get(key.curve.name)
        if entry is None:
            raise ValueError(f"the issuer's curve {key.curve.name} cannot sign tokens")
        return entry[0]
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    return "EdDSA"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise TokenRefused("the token is not a signed token (bad encoding)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("the token is not a signed token (bad encoding)") from None


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def make_token(key: SigningKey, spiffe_id: SpiffeId, now: float, ttl: float) -> str:
    """A token for ``spiffe_id``, valid from ``now`` for ``ttl`` seconds."""
    if ttl <= 0:
        raise ValueError("a token's lifetime must be positive")
    header = {"alg": algorithm_for(key.public_key()), "typ": "JWT"}
    claims = {
        "sub": str(spiffe_id),
        "aud": AUDIENCE,
        "iat": int(now),
        "exp": int(now + ttl),
    }
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{_b64(_sign(key, signing_input.encode('ascii')))}"


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, digest, size = _EC_HASHES[key.curve.name]
        # JWS wants r || s at the curve's width, not the DER that cryptography returns.
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def _verify(key: VerifyingKey, signature: bytes, data: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` over ``data`` is the key's."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        _, digest, size = _EC_HASHES[key.curve.name]
        if len(signature) != 2 * size:
            raise InvalidSignature
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(signature, data)


def _json_object(text: str, what: str) -> dict[str, object]:
    try:
        value = json.loads(_unb64(text))
    except (ValueError, UnicodeDecodeError):
        raise TokenRefused(f"the token's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenRefused(f"the token's {what} is not a JSON object")
    return value


def read_token(token: str, key: VerifyingKey, now: float, leeway: float = 0.0) -> TokenClaims:
    """The claims of a token this issuer signed and that is valid at ``now``.

    ``leeway`` allows for a minter whose clock runs ahead (``iat`` in the future).
    """
    if len(token) > _MAX_TOKEN:
        raise TokenRefused("the token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRefused("the token is not a signed token (expected three dot-separated parts)")
    header = _json_object(parts[0], "header")
    if header.get("alg") != algorithm_for(key):
        raise TokenRefused("the token is not signed with this Sentry's issuer key type")
    try:
        _verify(key, _unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except (InvalidSignature, UnicodeEncodeError):
        raise TokenRefused("the token's signature is not this Sentry's issuer's") from None
    # Only signed claims are read: nothing above trusted the payload.
    claims = _json_object(parts[1], "claims")
    if claims.get("aud") != AUDIENCE:
        raise TokenRefused(f"the token is not meant for a Sentry (aud is not {AUDIENCE!r})")
    issued_at, expires_at = claims.get("iat"), claims.get("exp")
    if not _whole(issued_at) or not _whole(expires_at):
        raise TokenRefused("the token has no valid iat and exp")
    assert isinstance(issued_at, int) and isinstance(expires_at, int)
    if now >= expires_at:
        raise TokenRefused("the token has expired; make a new one (tether sentry token)")
    if issued_at > now + leeway:
        raise TokenRefused("the token was issued in the future; check the clocks")
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise TokenRefused("the token names no SPIFFE ID")
    try:
        spiffe_id = SpiffeId.parse(subject)
    except InvalidSpiffeId:
        raise TokenRefused("the token's SPIFFE ID is malformed") from None
    return TokenClaims(spiffe_id, issued_at, expires_at)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_token_for(
    token: str, key: VerifyingKey, requested: SpiffeId, now: float, leeway: float = 0.0
) -> TokenClaims:
    """``read_token``, and the token must name exactly ``requested``."""
    claims = read_token(token, key, now, leeway)
    named = claims.spiffe_id
    # App IDs compare exactly (case too): a token for "Orders" does not make "orders".
    for what, theirs, ours in (
        ("trust domain", named.trust_domain, requested.trust_domain),
        ("namespace", named.namespace, requested.namespace),
        ("app ID", named.app_id, requested.app_id),
    ):
        if theirs != ours:
            raise TokenRefused(f"the token is for another {what}")
    return claims
