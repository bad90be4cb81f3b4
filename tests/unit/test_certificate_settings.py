"""Where a sidecar's certificates come from, decided from flags, environment and
``spec.mtls``: the local CA's lifetimes, ``--sentry-address`` and its environment,
and a refusal for every setting that cannot apply."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.authority import create_authority
from certs.spiffe import SpiffeId
from proxy.cli import build_parser, settings_from_args
from proxy.config.settings import SidecarSettings
from proxy.core.errors import UsageError

CA = create_authority("public", datetime.now(UTC)).ca_cert_pem.decode()
ANCHORS = {"DAPR_TRUST_ANCHORS": CA}


def settings(*flags: str, env: dict[str, str] | None = None) -> SidecarSettings:
    argv = ["sidecar", "--app-id", "orders", *flags]
    return settings_from_args(build_parser().parse_args(argv), env or {}, mtls_default=False)


def config(tmp_path: Path, mtls: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n"
        f"spec:\n  mtls:\n{mtls}"
    )
    return str(path)


def test_defaults_are_sentry_s_24h_and_15m_from_the_local_ca() -> None:
    chosen = settings("--enable-mtls")
    assert (chosen.sentry, chosen.workload_cert_ttl, chosen.allowed_clock_skew) == (
        None,
        86400.0,
        900.0,
    )


def test_spec_mtls_sets_the_local_ca_s_lifetimes(tmp_path: Path) -> None:
    path = config(tmp_path, "    workloadCertTTL: 8s\n    allowedClockSkew: 0s\n")
    chosen = settings("--enable-mtls", "--config", path)
    assert (chosen.workload_cert_ttl, chosen.allowed_clock_skew) == (8.0, 0.0)


def test_spec_mtls_lifetimes_without_mtls_are_refused(tmp_path: Path) -> None:
    path = config(tmp_path, "    workloadCertTTL: 8s\n")
    with pytest.raises(UsageError, match=r"spec.mtls.workloadCertTTL: applies only with --enable"):
        settings("--config", path)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("enabled: true", "--enable-mtls"),
        ("sentryAddress: x:1", "--sentry-address"),
        ("controlPlaneTrustDomain: cluster.local", "--control-plane-trust-domain"),
        ("tokenValidators: [{name: insecure}]", "tether sentry --config"),
    ],
)
def test_spec_mtls_keys_a_sidecar_does_not_use_are_refused(
    tmp_path: Path, key: str, reason: str
) -> None:
    path = config(tmp_path, f"    {key}\n")
    with pytest.raises(UsageError, match=reason):
        settings("--enable-mtls", "--config", path)


def test_sentry_address_with_its_environment() -> None:
    token = {"DAPR_CONTROLPLANE_TRUST_DOMAIN": "cluster.local", "DAPR_CONTROLPLANE_NAMESPACE": "x"}
    chosen = settings("--enable-mtls", "--sentry-address", "s:50001", env={**ANCHORS, **token})
    assert chosen.sentry is not None
    assert chosen.sentry.address == "s:50001"
    assert chosen.sentry.sentry_id == SpiffeId("cluster.local", "x", "dapr-sentry")
    assert chosen.sentry.trust_anchors_pem.strip() == CA.strip().encode()
    assert chosen.sentry.token_file is None


def test_control_plane_flags_win_over_the_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    env = {**ANCHORS, "DAPR_CONTROLPLANE_TRUST_DOMAIN": "env", "DAPR_SENTRY_TOKEN_FILE": str(token)}
    chosen = settings(
        "--enable-mtls",
        "--sentry-address",
        "s:1",
        "--control-plane-trust-domain",
        "flag",
        "--control-plane-namespace",
        "dapr-system",
        env=env,
    )
    assert chosen.sentry is not None
    assert chosen.sentry.sentry_id == SpiffeId("flag", "dapr-system", "dapr-sentry")
    assert chosen.sentry.token_file == token


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (("--sentry-address", "s:1"), ANCHORS, "--sentry-address: needs --enable-mtls"),
        (("--enable-mtls", "--sentry-address", "s:1"), {}, "set DAPR_TRUST_ANCHORS"),
        (("--enable-mtls", "--control-plane-namespace", "x"), {}, "give --sentry-address too"),
        (
            ("--enable-mtls", "--sentry-address", "s:1"),
            {**ANCHORS, "DAPR_SENTRY_TOKEN_FILE": "/nonexistent/token"},
            "DAPR_SENTRY_TOKEN_FILE: cannot read /nonexistent/token",
        ),
        (
            ("--enable-mtls", "--sentry-address", "s:1", "--control-plane-trust-domain", "A B"),
            ANCHORS,
            "invalid trust domain",
        ),
    ],
)
def test_sentry_settings_that_cannot_work(
    flags: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        settings(*flags, env=env)


def test_lifetimes_with_sentry_are_refused_sentry_decides(tmp_path: Path) -> None:
    path = config(tmp_path, "    allowedClockSkew: 1m\n")
    with pytest.raises(UsageError, match="with --sentry-address Sentry decides"):
        settings("--enable-mtls", "--sentry-address", "s:1", "--config", path, env=ANCHORS)
