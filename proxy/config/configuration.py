"""Dapr ``Configuration`` YAML: the parts tether implements, and a refusal for the rest.

A key tether reads but ignores would be a silent misconfiguration, so every Dapr
spec key that is not implemented yet is reported as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from proxy.core.errors import TetherError
from proxy.observability.tracing_settings import TracingSettings, parse_tracing
from yamlcheck import Problems, read_text, show, type_name, yaml_error

API_VERSION = "dapr.io/v1alpha1"
KIND = "Configuration"
SUPPORTED_RESOLVERS = ("sqlite",)

_TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec")
_IMPLEMENTED_SPEC_KEYS = ("nameResolution", "metric", "metrics", "tracing")
_UNIMPLEMENTED_SPEC_KEYS = (
    "accessControl",
    "mtls",
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
_NAME_RESOLUTION_KEYS = ("component", "version", "configuration")
# Keys of Dapr's sqlite resolver metadata that tether does not implement yet.
_UNIMPLEMENTED_SQLITE_KEYS = ("cleanupInterval", "timeout", "busyTimeout", "disableWAL")
_SQLITE_KEYS = ("connectionString", "updateInterval", "tableName", "metadataTableName")


class ConfigError(TetherError):
    """A Configuration file is unreadable or invalid; ``problems`` lists every issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class NameResolutionSettings:
    component: str = "sqlite"
    registry_path: Path | None = None  # None: the default registry path
    update_interval: float = 5.0


@dataclass(frozen=True)
class MetricConfig:
    """``spec.metric`` (alias ``metrics``); None means "not set here"."""

    enabled: bool | None = None
    increased_cardinality: bool = True  # Dapr's default: raw paths as labels
    path_matching: tuple[str, ...] = ()
    exclude_verbs: bool = False
    latency_buckets_ms: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ConfigurationSettings:
    name: str
    name_resolution: NameResolutionSettings
    metric: MetricConfig = MetricConfig()
    tracing: TracingSettings = field(default_factory=TracingSettings)


def _read_yaml(path: Path, problems: Problems) -> object:
    text = read_text(path, problems)
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.add_file(yaml_error(exc))
    return None


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


def _registry_path(problems: Problems, field: str, value: object) -> Path | None:
    text = problems.string(field, value)
    if text is None:
        return None
    if not text.strip():
        problems.add(field, "must not be empty")
        return None
    if text == ":memory:" or "mode=memory" in text:
        problems.add(field, "an in-memory database cannot be shared between sidecars")
        return None
    if "?" in text:
        problems.add(field, "connection options after '?' are not supported yet by tether")
        return None
    # Dapr accepts SQLite URI filenames; a plain "file:" prefix just names a path.
    if text.startswith("file:"):
        text = text.removeprefix("file:")
    return Path(text).expanduser()


def _update_interval(problems: Problems, field: str, value: object) -> float | None:
    seconds = problems.duration(field, value)
    if seconds is None:
        return None
    # Dapr's sqlite resolver stores whole-second timestamps.
    if seconds < 1:
        problems.add(field, f'{show(value)} is too short (at least "1s")')
        return None
    if seconds != int(seconds):
        problems.add(field, f"{show(value)} is not a whole number of seconds")
        return None
    return seconds


def _sqlite_settings(
    problems: Problems, field: str, value: object
) -> tuple[Path | None, float] | None:
    if value is None:
        return None, 5.0
    config = problems.mapping(field, value)
    if config is None:
        return None
    registry_path: Path | None = None
    update_interval = 5.0
    ok = True
    # Dapr decodes component metadata case-insensitively.
    canonical = {key.lower(): key for key in _SQLITE_KEYS + _UNIMPLEMENTED_SQLITE_KEYS}
    for raw_key, item in config.items():
        key = canonical.get(raw_key.lower())
        sub = f"{field}.{raw_key}"
        if key is None:
            problems.unknown(field, raw_key, _SQLITE_KEYS + _UNIMPLEMENTED_SQLITE_KEYS)
            ok = False
        elif key in _UNIMPLEMENTED_SQLITE_KEYS:
            problems.add(sub, "not supported yet by tether")
            ok = False
        elif key == "connectionString":
            registry_path = _registry_path(problems, sub, item)
            ok = ok and registry_path is not None
        elif key == "updateInterval":
            interval = _update_interval(problems, sub, item)
            ok = ok and interval is not None
            update_interval = interval or update_interval
        else:
            # tableName / metadataTableName: only Dapr's default names exist here.
            expected = "hosts" if key == "tableName" else "metadata"
            if item != expected:
                shown = show(item) if isinstance(item, str) else type_name(item)
                problems.add(sub, f'{shown} is not supported yet (only "{expected}")')
                ok = False
    return (registry_path, update_interval) if ok else None


def _name_resolution(problems: Problems, value: object) -> NameResolutionSettings:
    field = "spec.nameResolution"
    default = NameResolutionSettings()
    if value is None:
        return default
    section = problems.mapping(field, value)
    if section is None:
        return default
    for key in section:
        if key not in _NAME_RESOLUTION_KEYS:
            problems.unknown(field, key, _NAME_RESOLUTION_KEYS)
    if "version" in section and section["version"] not in ("v1", "", None):
        version = section["version"]
        shown = show(version) if isinstance(version, str) else type_name(version)
        problems.add(f"{field}.version", f"{shown} is not supported (supported: v1)")
    supported = ", ".join(SUPPORTED_RESOLVERS)
    if "component" not in section:
        problems.add(f"{field}.component", f"missing (supported: {supported})")
        return default
    component = problems.string(f"{field}.component", section["component"])
    if component is None:
        return default
    if component not in SUPPORTED_RESOLVERS:
        problems.add(
            f"{field}.component", f"{show(component)} is not supported yet (supported: {supported})"
        )
        return default
    parsed = _sqlite_settings(problems, f"{field}.configuration", section.get("configuration"))
    if parsed is None:
        return default
    registry_path, update_interval = parsed
    return NameResolutionSettings(component, registry_path, update_interval)


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
    name_resolution: NameResolutionSettings = NameResolutionSettings()
    metric: MetricConfig = MetricConfig()
    tracing: object = None
    tracing_at: int | None = None


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
                draft.name_resolution = _name_resolution(problems, value)
            elif key in ("metric", "metrics"):
                draft.metric = _metric(problems, key, value)
            elif key == "tracing":
                draft.tracing, draft.tracing_at = value, len(problems)
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
    document = _read_yaml(path, problems)
    if problems:
        raise ConfigError(problems.items)
    draft = _settings(problems, document)
    # The tracing section (and the OTEL_* variables) is read once, even when absent.
    tracing, tracing_problems = parse_tracing(draft.tracing, env or {}, problems.source)
    if problems or tracing_problems:
        lines = problems.items
        at = len(lines) if draft.tracing_at is None else draft.tracing_at
        raise ConfigError([*lines[:at], *tracing_problems, *lines[at:]])
    return ConfigurationSettings(draft.name, draft.name_resolution, draft.metric, tracing)
