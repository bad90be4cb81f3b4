"""``tether config check FILE...``: every problem of Dapr Configuration files at once, or
a summary of what each file sets (the same loader the sidecar uses, so the verdict is
the sidecar's). Pure: returns lines; the CLI prints them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.config.configuration import ConfigError, ConfigurationSettings, load_configuration
from proxy.core.access_policy import AccessControlSpec, AppPolicySpec


@dataclass
class ConfigCheck:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def check_configurations(paths: list[Path]) -> ConfigCheck:
    """Load each file as the sidecar would (without the ``OTEL_*`` environment: this
    judges the files); problems of all files, or a summary of each."""
    report = ConfigCheck()
    for path in paths:
        try:
            settings = load_configuration(path, {})
        except ConfigError as exc:
            report.problems.extend(exc.problems)
            continue
        if settings.access_control is not None:
            report.notes.extend(f"{path}: {note}" for note in settings.access_control.notes())
        report.summary.append(f"ok: {settings.name} ({path})")
        report.summary.extend(f"  {line}" for line in summarize(settings))
    return report


def summarize(settings: ConfigurationSettings) -> list[str]:
    lines = []
    resolution = settings.name_resolution
    if resolution.component:
        lines.append(f"name resolution: {resolution.component}")
    if settings.metric.enabled is not None:
        lines.append(f"metrics: {'enabled' if settings.metric.enabled else 'disabled'}")
    tracing = settings.tracing
    lines.append(f"tracing: sampling rate {tracing.sampling_rate:g}")
    lines.extend(_access_control(settings.access_control))
    mtls = settings.mtls
    if mtls is not None and mtls.given():
        ttl = "24h" if mtls.workload_cert_ttl is None else f"{mtls.workload_cert_ttl:g}s"
        skew = "15m" if mtls.allowed_clock_skew is None else f"{mtls.allowed_clock_skew:g}s"
        lines.append(f"local CA certificates: lifetime {ttl}, clock skew {skew}")
    return lines


def _access_control(spec: AccessControlSpec | None) -> list[str]:
    if spec is None:
        return ["access control: none (every caller may call every method)"]
    count = len(spec.policies)
    lines = [
        f"access control: default {spec.default_action}, trust domain {spec.trust_domain}, "
        f"{count} polic{'y' if count == 1 else 'ies'}"
    ]
    lines.extend(f"  {_policy(policy)}" for policy in spec.policies)
    return lines


def _policy(policy: AppPolicySpec) -> str:
    default = policy.default_action or "(the global default)"
    text = (
        f"app {policy.app_id} (namespace {policy.namespace}, trust domain "
        f"{policy.trust_domain}): default {default}"
    )
    for operation in policy.operations:
        verbs = ",".join(operation.verbs) if operation.verbs else "no verbs"
        text += f"; {operation.name} [{verbs}] {operation.action}"
    return text
