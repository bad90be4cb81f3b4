"""``spec.mtls`` of a Dapr Configuration: how long workload certificates live, the
clock skew they allow for, and which token validators a Sentry accepts.

Dapr reads this section from the control plane's ``daprsystem`` Configuration; tether
reads it in two places: ``tether sentry --config`` (everything here) and a sidecar's
own Configuration in the embedded local-CA mode, where the sidecar is its own CA
(the lifetimes only). This module only reads and checks the YAML; each user decides
what it applies and refuses the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from yamlcheck import Problems, show, type_name

_SECTION_KEYS = (
    "enabled",
    "workloadCertTTL",
    "allowedClockSkew",
    "sentryAddress",
    "controlPlaneTrustDomain",
    "tokenValidators",
)
_VALIDATOR_KEYS = ("name", "options")
# Dapr's validator names (pkg/sentry/config): insecure is self-hosted's default,
# kubernetes Kubernetes', jwks a JWT checked against a key set.
VALIDATOR_NAMES = ("insecure", "kubernetes", "jwks")


@dataclass(frozen=True)
class TokenValidatorSpec:
    name: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MtlsSpec:
    """What the section says; None (or empty) where it says nothing."""

    enabled: bool | None = None
    workload_cert_ttl: float | None = None  # seconds
    allowed_clock_skew: float | None = None  # seconds
    sentry_address: str | None = None
    control_plane_trust_domain: str | None = None
    token_validators: tuple[TokenValidatorSpec, ...] = ()

    def given(self) -> tuple[str, ...]:
        """The YAML keys the file set, for users that refuse some of them."""
        keys = {
            "enabled": self.enabled is not None,
            "workloadCertTTL": self.workload_cert_ttl is not None,
            "allowedClockSkew": self.allowed_clock_skew is not None,
            "sentryAddress": self.sentry_address is not None,
            "controlPlaneTrustDomain": self.control_plane_trust_domain is not None,
            "tokenValidators": bool(self.token_validators),
        }
        return tuple(key for key, present in keys.items() if present)


def parse_mtls(problems: Problems, value: object) -> MtlsSpec:
    """Read ``spec.mtls``; every problem goes to ``problems`` with its field path."""
    at = "spec.mtls"
    if value is None:
        return MtlsSpec()
    section = problems.mapping(at, value, _SECTION_KEYS)
    if section is None:
        return MtlsSpec()
    enabled = None
    if section.get("enabled") is not None:
        enabled = problems.boolean(f"{at}.enabled", section["enabled"])
    ttl = _duration(problems, f"{at}.workloadCertTTL", section.get("workloadCertTTL"))
    if ttl is not None and ttl <= 0:
        problems.add(f"{at}.workloadCertTTL", "must be longer than 0s")
        ttl = None
    skew = _duration(problems, f"{at}.allowedClockSkew", section.get("allowedClockSkew"))
    return MtlsSpec(
        enabled=enabled,
        workload_cert_ttl=ttl,
        allowed_clock_skew=skew,
        sentry_address=_text(problems, f"{at}.sentryAddress", section.get("sentryAddress")),
        control_plane_trust_domain=_text(
            problems, f"{at}.controlPlaneTrustDomain", section.get("controlPlaneTrustDomain")
        ),
        token_validators=_validators(
            problems, f"{at}.tokenValidators", section.get("tokenValidators")
        ),
    )


def _duration(problems: Problems, at: str, value: object) -> float | None:
    return None if value is None else problems.duration(at, value)


def _text(problems: Problems, at: str, value: object) -> str | None:
    return None if value is None else problems.name(at, value)


def _validators(problems: Problems, at: str, value: object) -> tuple[TokenValidatorSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(at, f"expected a list of validators, got {type_name(value)}")
        return ()
    found: list[TokenValidatorSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"{at}[{index}]"
        entry = problems.mapping(where, item, _VALIDATOR_KEYS)
        if entry is None:
            continue
        name = problems.name(f"{where}.name", entry.get("name", ""))
        if name is not None and name not in VALIDATOR_NAMES:
            problems.add(
                f"{where}.name",
                f"unknown validator {show(name)} (known: {', '.join(VALIDATOR_NAMES)})",
            )
            name = None
        elif name is not None and name in seen:
            problems.add(f"{where}.name", f"validator {show(name)} is listed twice")
            name = None
        options = _options(problems, f"{where}.options", entry.get("options"))
        if name is not None:
            seen.add(name)
            found.append(TokenValidatorSpec(name, options))
    return tuple(found)


def _options(problems: Problems, at: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    options = problems.mapping(at, value) or {}
    result: dict[str, str] = {}
    for key, item in options.items():
        text = problems.string(f"{at}.{key}", item)
        if text is not None:
            result[key] = text
    return result
