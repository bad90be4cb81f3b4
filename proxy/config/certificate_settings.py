"""Where this sidecar's workload certificates come from and how long they live:
``--sentry-address`` (with its environment and control-plane flags) or the local CA
in ``--certs-dir`` with ``spec.mtls`` of the sidecar's Configuration. Each setting
that cannot apply is refused with the reason, never ignored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from proxy.config.mtls import MtlsSpec
from proxy.config.sentry_settings import sentry_settings
from proxy.config.settings import SidecarSettings
from proxy.core.errors import UsageError

_LIFETIME_KEYS = ("workloadCertTTL", "allowedClockSkew")


def certificate_settings(
    settings: SidecarSettings,
    mtls: MtlsSpec | None,
    sentry_address: str | None,
    control_plane: tuple[str | None, str | None],  # --control-plane-trust-domain, -namespace
    env: Mapping[str, str],
) -> SidecarSettings:
    lifetimes = [key for key in (mtls.given() if mtls else ()) if key in _LIFETIME_KEYS]
    where = f"{settings.config_path}: spec.mtls" if settings.config_path else "spec.mtls"
    if not sentry_address:
        for flag, value in zip(
            ("--control-plane-trust-domain", "--control-plane-namespace"),
            control_plane,
            strict=True,
        ):
            if value is not None:
                raise UsageError(f"{flag}: names Sentry's identity; give --sentry-address too")
        if sentry_address is not None:
            raise UsageError("--sentry-address: give HOST:PORT")
        if lifetimes and not settings.enable_mtls:
            raise UsageError(f"{where}.{lifetimes[0]}: applies only with --enable-mtls")
        if mtls is None:
            return settings
        return replace(
            settings,
            workload_cert_ttl=_or(mtls.workload_cert_ttl, settings.workload_cert_ttl),
            allowed_clock_skew=_or(mtls.allowed_clock_skew, settings.allowed_clock_skew),
        )
    if not settings.enable_mtls:
        raise UsageError("--sentry-address: needs --enable-mtls (Sentry signs mTLS certificates)")
    if lifetimes:
        raise UsageError(
            f"{where}.{lifetimes[0]}: with --sentry-address Sentry decides certificate "
            "lifetimes (set them in the Configuration given to tether sentry --config)"
        )
    return replace(settings, sentry=sentry_settings(sentry_address, *control_plane, env))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
