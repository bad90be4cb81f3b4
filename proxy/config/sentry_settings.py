"""Where a sidecar gets its workload certificate from when it holds no CA key:
``--sentry-address`` with daprd's environment (``DAPR_TRUST_ANCHORS``,
``DAPR_SENTRY_TOKEN_FILE``) and control-plane flags, read and checked once."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certs.errors import InvalidSpiffeId
from certs.spiffe import SpiffeId
from proxy.core.errors import UsageError

SENTRY_APP_ID = "dapr-sentry"
DEFAULT_CONTROL_PLANE_TRUST_DOMAIN = "localhost"
DEFAULT_CONTROL_PLANE_NAMESPACE = "default"


@dataclass(frozen=True)
class SentrySettings:
    address: str  # HOST:PORT
    trust_anchors_pem: bytes  # the roots Sentry's certificate (and every peer's) must end at
    token_file: Path | None  # DAPR_SENTRY_TOKEN_FILE: read again for every request
    sentry_id: SpiffeId  # who Sentry must prove to be


def sentry_settings(
    address: str,
    trust_domain_flag: str | None,
    namespace_flag: str | None,
    env: Mapping[str, str],
) -> SentrySettings:
    """Flags over environment over daprd's defaults; a UsageError names what is wrong."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--sentry-address: {address!r} is not HOST:PORT")
    trust_domain = (
        trust_domain_flag
        or env.get("DAPR_CONTROLPLANE_TRUST_DOMAIN")
        or DEFAULT_CONTROL_PLANE_TRUST_DOMAIN
    )
    namespace = (
        namespace_flag or env.get("DAPR_CONTROLPLANE_NAMESPACE") or DEFAULT_CONTROL_PLANE_NAMESPACE
    )
    try:
        sentry_id = SpiffeId(trust_domain, namespace, SENTRY_APP_ID)
    except InvalidSpiffeId as exc:
        raise UsageError(f"--control-plane-trust-domain/--control-plane-namespace: {exc}") from exc
    token_file = None
    if env.get("DAPR_SENTRY_TOKEN_FILE"):
        token_file = Path(env["DAPR_SENTRY_TOKEN_FILE"])
        try:
            token_file.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"DAPR_SENTRY_TOKEN_FILE: cannot read {token_file}: {exc.strerror or exc}"
            ) from exc
    return SentrySettings(address, trust_anchors(env), token_file, sentry_id)


def trust_anchors(env: Mapping[str, str]) -> bytes:
    """``DAPR_TRUST_ANCHORS``: PEM certificates (Sentry's ca.crt), checked by OpenSSL."""
    text = env.get("DAPR_TRUST_ANCHORS", "").strip()
    if not text:
        raise UsageError(
            "--sentry-address: set DAPR_TRUST_ANCHORS to the PEM text of Sentry's ca.crt "
            '(e.g. DAPR_TRUST_ANCHORS="$(cat ca.crt)")'
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(
            "DAPR_TRUST_ANCHORS: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )
    try:
        ssl.create_default_context().load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise UsageError(f"DAPR_TRUST_ANCHORS: not valid PEM certificates: {exc}") from exc
    return (text + "\n").encode("ascii", errors="replace")
