"""spec.mtls of a Configuration: read with field paths, every problem at once."""

from __future__ import annotations

from proxy.config.mtls import MtlsSpec, TokenValidatorSpec, parse_mtls
from yamlcheck import Problems


def read(value: object) -> tuple[MtlsSpec, list[str]]:
    problems = Problems("c.yaml")
    return parse_mtls(problems, value), problems.items


def test_absent_section_says_nothing() -> None:
    spec, problems = read(None)
    assert spec == MtlsSpec() and spec.given() == () and problems == []


def test_dapr_keys_are_read() -> None:
    spec, problems = read(
        {
            "enabled": True,
            "workloadCertTTL": "1h30m",
            "allowedClockSkew": "15m",
            "sentryAddress": "sentry:50001",
            "controlPlaneTrustDomain": "cluster.local",
            "tokenValidators": [{"name": "insecure"}, {"name": "jwks", "options": {"a": "b"}}],
        }
    )
    assert problems == []
    assert spec.workload_cert_ttl == 5400.0 and spec.allowed_clock_skew == 900.0
    assert spec.token_validators == (
        TokenValidatorSpec("insecure"),
        TokenValidatorSpec("jwks", {"a": "b"}),
    )
    assert spec.given() == (
        "enabled",
        "workloadCertTTL",
        "allowedClockSkew",
        "sentryAddress",
        "controlPlaneTrustDomain",
        "tokenValidators",
    )


def test_every_problem_is_reported_with_its_path() -> None:
    _, problems = read(
        {
            "workloadCertTTL": "0s",
            "allowedClockSkew": "soon",
            "enabled": "yes",
            "tokenValidators": [{"name": "bogus"}, {"name": "insecure"}, {"name": "insecure"}, 3],
            "extra": 1,
        }
    )
    assert problems == [
        "c.yaml: spec.mtls.extra: unknown field",
        "c.yaml: spec.mtls.enabled: expected true or false, got a string",
        "c.yaml: spec.mtls.workloadCertTTL: must be longer than 0s",
        problems[3],
        'c.yaml: spec.mtls.tokenValidators[0].name: unknown validator "bogus" '
        "(known: insecure, kubernetes, jwks)",
        'c.yaml: spec.mtls.tokenValidators[2].name: validator "insecure" is listed twice',
        "c.yaml: spec.mtls.tokenValidators[3]: expected a mapping, got an integer",
    ]
    assert problems[3].startswith("c.yaml: spec.mtls.allowedClockSkew: ")
