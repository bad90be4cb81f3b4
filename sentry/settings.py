"""``tether sentry``'s flags, environment and Configuration file into frozen settings.

Sentry's Configuration is the control plane's (Dapr's ``daprsystem``), not a
sidecar's: it reads ``spec.mtls`` only, and of that only what a CA decides
(``workloadCertTTL``, ``allowedClockSkew``, ``tokenValidators``). Everything else is
refused with its field path, every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from certs.errors import InvalidSpiffeId
from certs.spiffe import validate_namespace, validate_trust_domain
from proxy.config.mtls import parse_mtls
from proxy.core.errors import TetherError, UsageError
from sentry.signing import SigningPolicy
from yamlcheck import Problems, read_document, show

API_VERSION = "dapr.io/v1alpha1"
KIND = "Configuration"
DEFAULT_TRUST_DOMAIN = "localhost"  # tether's control plane default (daprd's too)
DEFAULT_NAMESPACE = "default"
DEFAULT_PORT = 50001
DEFAULT_HEALTHZ_PORT = 8080
DEFAULT_METRICS_PORT = 9090
DEFAULT_LISTEN_ADDRESS = "0.0.0.0"  # Dapr Sentry listens on every interface

_TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec")
# spec.mtls keys a sidecar reads, and why Sentry refuses them. (Dapr's daprsystem file
# also sets enabled and controlPlaneTrustDomain: accepted when they agree with Sentry.)
_SIDECAR_MTLS_KEYS = {
    "sentryAddress": "is for sidecars (tether sidecar --sentry-address), not for Sentry",
}
_KUBERNETES_NOT_BUILT = (
    "the kubernetes validator (service-account tokens via TokenReview) is not built yet; "
    "use tether's own tokens (tether sentry token), which need no entry here"
)


class SentryConfigError(TetherError):
    """Sentry's Configuration file is unreadable or invalid; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class SentrySettings:
    issuer_dir: Path
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    namespace: str = DEFAULT_NAMESPACE
    port: int = DEFAULT_PORT
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    healthz_port: int = DEFAULT_HEALTHZ_PORT
    healthz_listen_address: str = DEFAULT_LISTEN_ADDRESS
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_listen_address: str = DEFAULT_LISTEN_ADDRESS
    policy: SigningPolicy = field(default_factory=SigningPolicy)
    config_path: Path | None = None
    log_level: str = "info"
    log_as_json: bool = False


def parse_port(text: str, flag: str) -> int:
    """0 (any free port: the log says which) to 65535."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise UsageError(f"{flag}: {text!r} is not a port number (0-65535)")
    return int(text)


def sentry_settings(
    *,
    issuer_dir: str,
    trust_domain: str,
    port: str,
    listen_address: str,
    healthz_port: str,
    healthz_listen_address: str | None,
    metrics_port: str,
    metrics_listen_address: str | None,
    config: str | None,
    log_level: str,
    log_as_json: bool,
    env: Mapping[str, str],
) -> SentrySettings:
    """Flags (already split by argparse) and environment into settings; the
    Configuration file, if any, is read here too (SentryConfigError lists its problems)."""
    try:
        validate_trust_domain(trust_domain)
    except InvalidSpiffeId as exc:
        raise UsageError(f"--trust-domain: {exc}") from None
    namespace = env.get("NAMESPACE") or DEFAULT_NAMESPACE
    try:
        validate_namespace(namespace)
    except InvalidSpiffeId as exc:
        raise UsageError(f"NAMESPACE: {exc}") from None
    config_path = Path(config).expanduser() if config else None
    return SentrySettings(
        issuer_dir=Path(issuer_dir).expanduser(),
        trust_domain=trust_domain,
        namespace=namespace,
        port=parse_port(port, "--port"),
        listen_address=listen_address,
        healthz_port=parse_port(healthz_port, "--healthz-port"),
        healthz_listen_address=healthz_listen_address or listen_address,
        metrics_port=parse_port(metrics_port, "--metrics-port"),
        metrics_listen_address=metrics_listen_address or listen_address,
        policy=SigningPolicy() if config_path is None else load_policy(config_path, trust_domain),
        config_path=config_path,
        log_level=log_level,
        log_as_json=log_as_json,
    )


def load_policy(path: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> SigningPolicy:
    """Sentry's Configuration file into its signing policy; SentryConfigError otherwise."""
    problems = Problems(str(path))
    document = read_document(path, problems)
    policy = SigningPolicy()
    if not problems:
        policy = policy_from_document(problems, document, trust_domain)
    if problems:
        raise SentryConfigError(problems.items)
    return policy


def policy_from_document(
    problems: Problems, document: object, trust_domain: str = DEFAULT_TRUST_DOMAIN
) -> SigningPolicy:
    """One parsed Configuration document; its problems go to ``problems``."""
    top = problems.document(document)
    if top is None:
        return SigningPolicy()
    top = problems.mapping("", top, _TOP_LEVEL_KEYS) or {}
    problems.literal(top, "apiVersion", API_VERSION)
    problems.literal(top, "kind", KIND)
    metadata = problems.mapping("metadata", top.get("metadata", {})) or {}
    if "name" not in metadata:
        problems.add("metadata.name", "missing")
    else:
        problems.name("metadata.name", metadata["name"])
    spec = problems.mapping("spec", top.get("spec", {})) or {}
    for key in spec:
        if key != "mtls":
            problems.add(
                f"spec.{key}",
                "Sentry reads only spec.mtls (this is Sentry's Configuration, not a sidecar's)",
            )
    mtls = parse_mtls(problems, spec.get("mtls"))
    for key in mtls.given():
        if key in _SIDECAR_MTLS_KEYS:
            problems.add(f"spec.mtls.{key}", _SIDECAR_MTLS_KEYS[key])
    if mtls.enabled is False:
        problems.add(
            "spec.mtls.enabled",
            "Sentry only serves mTLS certificates; to run without mTLS, start the sidecars "
            "with --enable-mtls=false and no Sentry",
        )
    given_domain = mtls.control_plane_trust_domain
    if given_domain is not None and given_domain != trust_domain:
        problems.add(
            "spec.mtls.controlPlaneTrustDomain",
            f"{show(given_domain)} differs from Sentry's --trust-domain {show(trust_domain)}",
        )
    insecure = False
    for index, validator in enumerate(mtls.token_validators):
        at = f"spec.mtls.tokenValidators[{index}]"
        if validator.name == "insecure":
            insecure = True
            if validator.options:
                problems.add(f"{at}.options", "the insecure validator takes no options")
        elif validator.name == "kubernetes":
            problems.add(f"{at}.name", _KUBERNETES_NOT_BUILT)
        else:
            problems.add(f"{at}.name", f"the {show(validator.name)} validator is not built yet")
    policy = SigningPolicy(insecure_enabled=insecure)
    if mtls.workload_cert_ttl is not None:
        policy = replace(policy, workload_ttl=timedelta(seconds=mtls.workload_cert_ttl))
    if mtls.allowed_clock_skew is not None:
        policy = replace(policy, clock_skew=timedelta(seconds=mtls.allowed_clock_skew))
    return policy
