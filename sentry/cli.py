"""``tether sentry`` (serve the CA) and ``tether sentry token`` (mint a token).

Errors are one line each on stderr, never a traceback: exit 2 for a bad flag,
1 for bad issuer files or a bad Configuration (every problem listed)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from certs.errors import CertError, InvalidSpiffeId
from certs.spiffe import SpiffeId
from proxy.core.errors import TetherError, UsageError
from sentry import settings as defaults
from sentry.signing import DEFAULT_APP_TRUST_DOMAIN
from sentry.tokens import DEFAULT_TTL
from yamlcheck import DurationError, parse_go_duration

_LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _serve_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tether sentry",
        description="A certificate authority for the mesh, speaking Dapr Sentry's "
        "dapr.proto.sentry.v1.CA. `tether sentry token --help` mints tokens.",
    )
    add = parser.add_argument
    add("--issuer-credentials", required=True,
        help="folder holding ca.crt, issuer.crt and issuer.key (tether certs init)")  # fmt: skip
    add("--trust-domain", default=defaults.DEFAULT_TRUST_DOMAIN,
        help="Sentry's own (control plane) trust domain")  # fmt: skip
    add("--port", default=str(defaults.DEFAULT_PORT), help="gRPC port (0: any free port)")
    add("--listen-address", default=defaults.DEFAULT_LISTEN_ADDRESS, help="gRPC bind address")
    add("--healthz-port", default=str(defaults.DEFAULT_HEALTHZ_PORT), help="GET /healthz port")
    add("--healthz-listen-address", default=None, help="default: --listen-address")
    add("--metrics-port", default=str(defaults.DEFAULT_METRICS_PORT), help="GET /metrics port")
    add("--metrics-listen-address", default=None, help="default: --listen-address")
    add("--config", default=None, help="Sentry's Configuration (spec.mtls)")
    add("--log-level", default="info", choices=_LOG_LEVELS, help="log verbosity")
    add("--log-as-json", action="store_true", help="JSON log lines")
    return parser


def _token_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tether sentry token",
        description="Print a token that lets one sidecar get a certificate for one SPIFFE ID.",
    )
    add = parser.add_argument
    add("--issuer-credentials", required=True, help="the folder Sentry signs with")
    add("--app-id", required=True, help="the app ID the token is for")
    add("--namespace", default=defaults.DEFAULT_NAMESPACE, help="its namespace")
    add("--trust-domain", default=DEFAULT_APP_TRUST_DOMAIN,
        help="its trust domain (the sidecar's accessControl.trustDomain)")  # fmt: skip
    add(
        "--ttl",
        default=f"{DEFAULT_TTL / 3600:.0f}h",
        help="how long the token is accepted (a Go duration)",
    )
    return parser


def _token(argv: Sequence[str]) -> int:
    from certs.authority import load_issuer
    from sentry.tokens import make_token

    args = _token_parser().parse_args(argv)
    try:
        ttl = parse_go_duration(args.ttl)
    except DurationError as exc:
        raise UsageError(f"--ttl: {exc}") from None
    if ttl <= 0:
        raise UsageError(f"--ttl: {args.ttl!r} must be longer than 0s")
    try:
        spiffe_id = SpiffeId(args.trust_domain, args.namespace, args.app_id)
    except InvalidSpiffeId as exc:
        raise UsageError(str(exc)) from None
    now = datetime.now(UTC)
    issuer = load_issuer(Path(args.issuer_credentials).expanduser(), now)
    # A token outliving its issuer would be refused anyway; say so instead.
    left = (issuer.not_after - now).total_seconds()
    if ttl > left:
        print(f"note: the issuer expires in {left / 3600:.0f}h; the token ends then",
              file=sys.stderr)  # fmt: skip
        ttl = left
    key = issuer.private_key
    # Named one by one: newer cryptography adds issuer key types (ML-DSA) JWS has no alg for.
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise CertError(f"an issuer key of type {type(key).__name__} cannot sign tokens")
    print(make_token(key, spiffe_id, now.timestamp(), ttl))
    return 0


def _serve(argv: Sequence[str]) -> int:
    from proxy.observability.logs import configure_logging
    from sentry.server import run_sentry
    from sentry.settings import sentry_settings

    args = _serve_parser().parse_args(argv)
    settings = sentry_settings(
        issuer_dir=args.issuer_credentials,
        trust_domain=args.trust_domain,
        port=args.port,
        listen_address=args.listen_address,
        healthz_port=args.healthz_port,
        healthz_listen_address=args.healthz_listen_address,
        metrics_port=args.metrics_port,
        metrics_listen_address=args.metrics_listen_address,
        config=args.config,
        log_level=args.log_level,
        log_as_json=args.log_as_json,
        env=os.environ,
    )
    configure_logging(settings.log_level, "dapr-sentry", settings.log_as_json)
    import uvloop

    uvloop.run(run_sentry(settings))
    return 0


def main(argv: Sequence[str]) -> int:
    """``tether sentry ARGS``; the exit code."""
    try:
        if argv[:1] == ["token"]:
            return _token(argv[1:])
        return _serve(argv)
    except (TetherError, CertError) as exc:
        for line in str(exc).splitlines() or ["error"]:
            print(f"tether sentry: error: {line}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        return 130
