"""Sentry's Configuration and flags: spec.mtls's CA keys apply, the rest is refused
with field paths, every problem at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from proxy.core.errors import UsageError
from sentry.settings import SentryConfigError, load_policy, sentry_settings
from sentry.signing import SigningPolicy


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sentry.yaml"
    path.write_text(text)
    return path


HEAD = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"


def test_the_ca_keys_apply(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEAD
        + """spec:
  mtls:
    workloadCertTTL: 30s
    allowedClockSkew: 1m
    tokenValidators:
      - name: insecure
""",
    )
    assert load_policy(path) == SigningPolicy(
        workload_ttl=timedelta(seconds=30),
        clock_skew=timedelta(minutes=1),
        insecure_enabled=True,
    )


def test_an_empty_spec_keeps_daprs_defaults(tmp_path: Path) -> None:
    assert load_policy(_write(tmp_path, HEAD + "spec: {}\n")) == SigningPolicy()
    assert SigningPolicy().workload_ttl == timedelta(hours=24)
    assert SigningPolicy().clock_skew == timedelta(minutes=15)


def test_every_problem_at_once_with_field_paths(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {}
spec:
  accessControl:
    defaultAction: deny
  tracing: {}
  mtls:
    enabled: false
    controlPlaneTrustDomain: cluster.local
    sentryAddress: localhost:50001
    workloadCertTTL: 5 minutes
    allowedClockSkew: -1x
    tokenValidators:
      - name: kubernetes
      - name: jwks
      - name: insecure
        options: {a: b}
      - name: magic
    extra: 1
""",
    )
    with pytest.raises(SentryConfigError) as caught:
        load_policy(path)
    lines = caught.value.problems
    expected = [
        "metadata.name: missing",
        "spec.accessControl: Sentry reads only spec.mtls",
        "spec.tracing: Sentry reads only spec.mtls",
        "spec.mtls.extra: unknown field",
        "spec.mtls.workloadCertTTL:",
        "spec.mtls.allowedClockSkew:",
        "spec.mtls.tokenValidators[3].name: unknown validator",
        "spec.mtls.enabled: Sentry only serves mTLS certificates",
        'spec.mtls.controlPlaneTrustDomain: "cluster.local" differs from Sentry\'s --trust-domain',
        "spec.mtls.sentryAddress: is for sidecars",
        "spec.mtls.tokenValidators[0].name: the kubernetes validator (service-account tokens",
        'spec.mtls.tokenValidators[1].name: the "jwks" validator is not built yet',
        "spec.mtls.tokenValidators[2].options: the insecure validator takes no options",
    ]
    for fragment in expected:
        assert any(f"{path}: {fragment}" in line for line in lines), (fragment, lines)
    assert len(lines) == len(expected), lines


def test_kubernetes_validator_says_not_built(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "spec:\n  mtls:\n    tokenValidators: [{name: kubernetes}]\n")
    with pytest.raises(SentryConfigError, match="not built yet"):
        load_policy(path)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("a: [", "line"),
        ("- 1\n", "expected a mapping at the top level"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "apiVersion: expected"),
    ],
)
def test_broken_files(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SentryConfigError, match=fragment):
        load_policy(_write(tmp_path, text))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SentryConfigError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")


def _flags(**overrides: object) -> dict[str, object]:
    flags: dict[str, object] = {
        "issuer_dir": "/ca",
        "trust_domain": "localhost",
        "port": "0",
        "listen_address": "127.0.0.1",
        "healthz_port": "0",
        "healthz_listen_address": None,
        "metrics_port": "9090",
        "metrics_listen_address": None,
        "config": None,
        "log_level": "info",
        "log_as_json": False,
        "env": {},
    }
    flags.update(overrides)
    return flags


def test_flags_and_environment() -> None:
    settings = sentry_settings(**_flags(env={"NAMESPACE": "dapr-system"}))  # type: ignore[arg-type]
    assert (settings.port, settings.healthz_port, settings.metrics_port) == (0, 0, 9090)
    assert settings.namespace == "dapr-system"
    assert settings.healthz_listen_address == "127.0.0.1"
    assert settings.metrics_listen_address == "127.0.0.1"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"port": "70000"}, "--port"),
        ({"metrics_port": "x"}, "--metrics-port"),
        ({"trust_domain": "Bad Domain"}, "--trust-domain"),
        ({"env": {"NAMESPACE": "a.b"}}, "NAMESPACE"),
    ],
)
def test_bad_flags(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        sentry_settings(**_flags(**overrides))  # type: ignore[arg-type]


def test_daprs_own_daprsystem_file_is_taken_as_is(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
  namespace: default
spec:
  mtls:
    enabled: true
    controlPlaneTrustDomain: localhost
    workloadCertTTL: "24h"
    allowedClockSkew: "15m"
""",
    )
    policy = load_policy(path)
    assert policy.workload_ttl == timedelta(hours=24)
    assert policy.clock_skew == timedelta(minutes=15)
