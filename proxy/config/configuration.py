"""Dapr ``Configuration`` YAML: the parts tether implements, and a refusal for the rest.

A key tether reads but ignores would be a silent misconfiguration, so every Dapr
spec key that is not implemented yet is reported as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from proxy.config.access_control import parse_access_control
from proxy.config.mtls import MtlsSpec, parse_mtls
from proxy.config.name_resolution import (
    NameResolutionSettings,
    parse_name_resolution,
)
from proxy.core.access_policy import AccessControlSpec
from proxy.core.errors import TetherError
from proxy.observability.metric_settings import MetricSettings
from proxy.observability.tracing_settings import TracingSettings, parse_tracing
from yamlcheck import Problems, read_document

API_VERSION = "dapr.io/v1alpha1"
KIND = "Configuration"

_TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec")
_IMPLEMENTED_SPEC_KEYS = (
    "nameResolution",
    "metric",
    "metrics",
    "tracing",
    "accessControl",
    "mtls",
)
# spec.mtls keys a sidecar does not use, and where they belong instead.
_NOT_FOR_A_SIDECAR = {
    "enabled": "a sidecar's mTLS is switched by --enable-mtls",
    "sentryAddress": "a sidecar's Sentry is given by --sentry-address",
    "controlPlaneTrustDomain": "a sidecar takes it from --control-plane-trust-domain",
    "tokenValidators": "a Sentry setting (tether sentry --config), not a sidecar's",
}
_UNIMPLEMENTED_SPEC_KEYS = (
    "features",
    "appHttpPipeline",
    "httpPipeline",
    "secrets",
    "api",
    "components",
    "logging",
    "wasm",
    "workflow",
)


class ConfigError(TetherError):
    """A Configuration file is unreadable or invalid; ``problems`` lists every issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class MetricConfig:
    """``spec.metric`` (alias ``metrics``); None means "not set here"."""

    enabled: bool | None = None
    increased_cardinality: bool = True  # Dapr's default: raw paths as labels
    path_matching: tuple[str, ...] = ()
    exclude_verbs: bool = False
    latency_buckets_ms: tuple[float, ...] | None = None

    def settings(self) -> MetricSettings:
        """What the metrics recorder needs of this section."""
        chosen = MetricSettings(
            increased_cardinality=self.increased_cardinality,
            path_matching=self.path_matching,
            exclude_verbs=self.exclude_verbs,
        )
        if self.latency_buckets_ms is not None:
            chosen = replace(chosen, latency_buckets=self.latency_buckets_ms)
        return chosen


@dataclass(frozen=True)
class ConfigurationSettings:
    name: str
    name_resolution: NameResolutionSettings
    metric: MetricConfig = MetricConfig()
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # None: no access control (Dapr's default: every caller may call every method).
    access_control: AccessControlSpec | None = None
    # spec.mtls: the lifetimes of certificates from the local CA (None: not set).
    mtls: MtlsSpec | None = None


def _name(problems: Problems, doc: dict[str, object]) -> str:
    if "metadata" not in doc:
        problems.add("metadata.name", "missing")
        return ""
    metadata = problems.mapping("metadata", doc["metadata"])
    if metadata is None:
        return ""
    # Other metadata (namespace, labels, annotations) describes the object, not
    # the sidecar's behaviour, so it may be present and is not read.
    if "name" not in metadata:
        problems.add("metadata.name", "missing")
        return ""
    return problems.name("metadata.name", metadata["name"]) or ""


_METRIC_KEYS = ("enabled", "recordErrorCodes", "latencyDistributionBuckets", "http", "rules")
_METRIC_HTTP_KEYS = ("increasedCardinality", "pathMatching", "excludeVerbs")


def _metric(problems: Problems, key: str, value: object) -> MetricConfig:
    field = f"spec.{key}"
    section = problems.mapping(field, value)
    if section is None:
        return MetricConfig()
    enabled = None
    buckets: tuple[float, ...] | None = None
    http: dict[str, object] = {}
    for name, item in section.items():
        sub = f"{field}.{name}"
        if name == "enabled":
            enabled = problems.boolean(sub, item)
        elif name == "recordErrorCodes":
            if problems.boolean(sub, item):
                problems.add(sub, "error-code metrics are not supported yet by tether")
        elif name == "rules":
            if item:
                problems.add(sub, "metric label rules are not supported yet by tether")
        elif name == "latencyDistributionBuckets":
            numbers = item if isinstance(item, list) else None
            if not numbers or not all(
                isinstance(n, int | float) and not isinstance(n, bool) and n > 0 for n in numbers
            ):
                problems.add(sub, "expected a list of positive numbers (milliseconds)")
            else:
                buckets = tuple(sorted(float(n) for n in numbers))
        elif name == "http":
            http = problems.mapping(sub, item) or {}
        else:
            problems.unknown(field, name, _METRIC_KEYS)
    increased, exclude_verbs, templates = True, False, ()
    for name, item in http.items():
        sub = f"{field}.http.{name}"
        if name == "increasedCardinality":
            increased = problems.boolean(sub, item) is not False
        elif name == "excludeVerbs":
            exclude_verbs = problems.boolean(sub, item) is True
        elif name == "pathMatching":
            if not isinstance(item, list) or not all(
                isinstance(t, str) and t.startswith("/") for t in item
            ):
                problems.add(sub, "expected a list of paths starting with /")
            else:
                templates = tuple(item)
        else:
            problems.unknown(f"{field}.http", name, _METRIC_HTTP_KEYS)
    return MetricConfig(enabled, increased, templates, exclude_verbs, buckets)


@dataclass
class _Draft:
    """What the file says, tracing still raw (``tracing_at``: where its problems belong)."""

    name: str = ""
    name_resolution: NameResolutionSettings = field(default_factory=NameResolutionSettings)
    metric: MetricConfig = MetricConfig()
    tracing: object = None
    tracing_at: int | None = None
    access_control: AccessControlSpec | None = None
    mtls: MtlsSpec | None = None


def _settings(problems: Problems, document: object) -> _Draft:
    draft = _Draft()
    if document is None:
        problems.add_file("the file is empty")
        return draft
    doc = problems.document(document)
    if doc is None:
        return draft
    top = problems.mapping("", doc, _TOP_LEVEL_KEYS) or {}
    problems.literal(top, "apiVersion", API_VERSION)
    problems.literal(top, "kind", KIND)
    draft.name = _name(problems, top)
    spec = {} if top.get("spec") is None else problems.mapping("spec", top["spec"])
    if spec is not None:
        if "metric" in spec and "metrics" in spec:
            problems.add("spec.metrics", 'give either "metric" or its alias "metrics", not both')
        for key, value in spec.items():
            if key == "nameResolution":
                draft.name_resolution = parse_name_resolution(problems, value)
            elif key in ("metric", "metrics"):
                draft.metric = _metric(problems, key, value)
            elif key == "tracing":
                draft.tracing, draft.tracing_at = value, len(problems)
            elif key == "accessControl":
                draft.access_control = parse_access_control(problems, value)
            elif key == "mtls":
                draft.mtls = parse_mtls(problems, value)
                for given in draft.mtls.given():
                    if given in _NOT_FOR_A_SIDECAR:
                        problems.add(f"spec.mtls.{given}", _NOT_FOR_A_SIDECAR[given])
            elif key in _UNIMPLEMENTED_SPEC_KEYS:
                problems.add(f"spec.{key}", "not supported yet by tether")
            else:
                problems.unknown("spec", key, _IMPLEMENTED_SPEC_KEYS + _UNIMPLEMENTED_SPEC_KEYS)
    return draft


def load_configuration(path: Path, env: Mapping[str, str] | None = None) -> ConfigurationSettings:
    """Read and validate a Dapr Configuration file; raises ConfigError listing every problem.

    ``env`` supplies the ``OTEL_*`` variables, which take precedence over ``spec.tracing``.
    """
    problems = Problems(str(path))
    document = read_document(path, problems)
    if problems:
        raise ConfigError(problems.items)
    draft = _settings(problems, document)
    # The tracing section (and the OTEL_* variables) is read once, even when absent.
    tracing, tracing_problems = parse_tracing(draft.tracing, env or {}, problems.source)
    if problems or tracing_problems:
        lines = problems.items
        at = len(lines) if draft.tracing_at is None else draft.tracing_at
        raise ConfigError([*lines[:at], *tracing_problems, *lines[at:]])
    return ConfigurationSettings(
        draft.name, draft.name_resolution, draft.metric, tracing, draft.access_control, draft.mtls
    )
