from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.configuration import (
    ConfigError,
    ConfigurationSettings,
    NameResolutionSettings,
    load_configuration,
)

HEADER = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    assert str(info.value) == "\n".join(info.value.problems)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p.removeprefix(prefix) for p in info.value.problems]


def test_valid_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """\
  namespace: default
spec:
  nameResolution:
    component: sqlite
    version: v1
    configuration:
      connectionString: /var/run/tether/registry.db
      updateInterval: 10s
      tableName: hosts
""",
    )
    assert load_configuration(path) == ConfigurationSettings(
        name="appconfig",
        name_resolution=NameResolutionSettings(
            component="sqlite",
            registry_path=Path("/var/run/tether/registry.db"),
            update_interval=10.0,
        ),
    )


def test_minimal_file_uses_defaults(tmp_path: Path) -> None:
    settings = load_configuration(write(tmp_path, HEADER + "spec: {}\n"))
    assert settings == ConfigurationSettings("appconfig", NameResolutionSettings())
    assert load_configuration(write(tmp_path, HEADER)).name_resolution.registry_path is None


def test_connection_string_forms(tmp_path: Path) -> None:
    def path_of(value: str) -> Path | None:
        text = HEADER + (
            "spec:\n  nameResolution:\n    component: sqlite\n"
            f"    configuration:\n      connectionString: {value!r}\n"
        )
        return load_configuration(write(tmp_path, text)).name_resolution.registry_path

    assert path_of("file:nr.db") == Path("nr.db")
    assert path_of("~/nr.db") == Path.home() / "nr.db"
    base = "spec.nameResolution.configuration.connectionString: "
    bad = HEADER + "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
    assert problems(tmp_path, bad + "      connectionString: ':memory:'\n") == [
        base + "an in-memory database cannot be shared between sidecars"
    ]
    assert problems(tmp_path, bad + "      connectionString: 'file:x.db?_txlock=immediate'\n") == [
        base + "connection options after '?' are not supported yet by tether"
    ]
    assert problems(tmp_path, bad + "      connectionString: ''\n") == [base + "must not be empty"]
    assert problems(tmp_path, bad + "      connectionString: 3\n") == [
        base + "expected a string, got an integer"
    ]


def test_header_errors_all_at_once(tmp_path: Path) -> None:
    text = """\
apiVersion: v1
kind: Resiliency
metadata:
  labels: {}
spec:
  nameResolutoin: {}
  mtls:
    enabled: true
  bogus: 1
"""
    assert problems(tmp_path, text) == [
        'apiVersion: expected "dapr.io/v1alpha1", got "v1"',
        'kind: expected "Configuration", got "Resiliency"',
        "metadata.name: missing",
        'spec.nameResolutoin: unknown field (did you mean "nameResolution"?)',
        "spec.mtls.enabled: a sidecar's mTLS is switched by --enable-mtls",
        "spec.bogus: unknown field",
    ]


def test_missing_header_fields(tmp_path: Path) -> None:
    assert problems(tmp_path, "spec: {}\n") == [
        'apiVersion: missing (expected "dapr.io/v1alpha1")',
        'kind: missing (expected "Configuration")',
        "metadata.name: missing",
    ]
    assert problems(tmp_path, "apiVersion: 1\nkind: Configuration\nmetadata: []\nspec: 3\n") == [
        'apiVersion: expected "dapr.io/v1alpha1", got an integer',
        "metadata: expected a mapping, got a list",
        "spec: expected a mapping, got an integer",
    ]
    assert problems(tmp_path, HEADER.replace("appconfig", "''")) == [
        "metadata.name: must not be empty"
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(tmp_path, HEADER + "specs: {}\n") == [
        'specs: unknown field (did you mean "spec"?)'
    ]


@pytest.mark.parametrize(
    "key",
    [
        "features",
        "appHttpPipeline",
        "httpPipeline",
        "secrets",
        "api",
        "components",
        "logging",
        "wasm",
        "workflow",
    ],
)
def test_unimplemented_spec_keys_are_refused(tmp_path: Path, key: str) -> None:
    assert problems(tmp_path, HEADER + f"spec:\n  {key}: {{}}\n") == [
        f"spec.{key}: not supported yet by tether"
    ]


@pytest.mark.parametrize("component", ["consul", "aws.cloudmap"])
def test_unsupported_component(tmp_path: Path, component: str) -> None:
    text = HEADER + f"spec:\n  nameResolution:\n    component: {component}\n"
    assert problems(tmp_path, text) == [
        f'spec.nameResolution.component: "{component}" is not supported yet'
        " (supported: sqlite, kubernetes, nameformat, dns, mdns)"
    ]


def test_mdns_takes_no_metadata_as_in_dapr(tmp_path: Path) -> None:
    text = HEADER + "spec:\n  nameResolution:\n    component: mdns\n"
    assert load_configuration(write(tmp_path, text)).name_resolution.component == "mdns"
    text += "    configuration: {domain: local}\n"
    assert problems(tmp_path, text) == ["spec.nameResolution.configuration.domain: unknown field"]


def test_name_resolution_errors(tmp_path: Path) -> None:
    text = (
        HEADER
        + """\
spec:
  nameResolution:
    version: v2
    configuratoin: {}
"""
    )
    assert problems(tmp_path, text) == [
        'spec.nameResolution.configuratoin: unknown field (did you mean "configuration"?)',
        'spec.nameResolution.version: "v2" is not supported (supported: v1)',
        "spec.nameResolution.component: missing"
        " (supported: sqlite, kubernetes, nameformat, dns, mdns)",
    ]
    assert problems(tmp_path, HEADER + "spec:\n  nameResolution: sqlite\n") == [
        "spec.nameResolution: expected a mapping, got a string"
    ]


def test_sqlite_configuration_errors(tmp_path: Path) -> None:
    text = (
        HEADER
        + """\
spec:
  nameResolution:
    component: sqlite
    configuration:
      tableName: nodes
      metadataTableName: meta
      updateIntreval: 5s
      cleanupInterval: 1h
      disableWAL: true
"""
    )
    base = "spec.nameResolution.configuration."
    assert problems(tmp_path, text) == [
        base + 'tableName: "nodes" is not supported yet (only "hosts")',
        base + 'metadataTableName: "meta" is not supported yet (only "metadata")',
        base + 'updateIntreval: unknown field (did you mean "updateInterval"?)',
        base + "cleanupInterval: not supported yet by tether",
        base + "disableWAL: not supported yet by tether",
    ]


def test_sqlite_keys_are_case_insensitive_like_dapr(tmp_path: Path) -> None:
    text = HEADER + (
        "spec:\n  nameResolution:\n    component: sqlite\n"
        "    configuration:\n      connectionstring: /r.db\n      UPDATEINTERVAL: 2s\n"
    )
    settings = load_configuration(write(tmp_path, text)).name_resolution
    assert settings == NameResolutionSettings("sqlite", Path("/r.db"), 2.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", '5 has no unit (write e.g. "5s")'),
        ("'5'", '"5" has no unit (write e.g. "5s")'),
        ("'5 s'", '"5 s" is not a duration'),
        ("1500ms", '"1500ms" is not a whole number of seconds'),
        ("500ms", '"500ms" is too short (at least "1s")'),
        ("-5s", '"-5s" is negative; durations must be 0 or more'),
        ("'0'", '"0" is too short (at least "1s")'),
        ("[5s]", "expected a duration, got a list"),
    ],
)
def test_update_interval_errors(tmp_path: Path, value: str, message: str) -> None:
    text = HEADER + (
        "spec:\n  nameResolution:\n    component: sqlite\n"
        f"    configuration:\n      updateInterval: {value}\n"
    )
    assert problems(tmp_path, text) == [
        f"spec.nameResolution.configuration.updateInterval: {message}"
    ]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = HEADER + "spec:\n  nameResolution: [\n    component: sqlite\n  tracing: {\n"
    [problem] = problems(tmp_path, text)
    assert problem.startswith("line ")
    line = int(problem.split(":")[0].removeprefix("line "))
    assert 5 <= line <= 9
    assert "Traceback" not in problem


def test_yaml_syntax_error_exact(tmp_path: Path) -> None:
    assert problems(tmp_path, "a: b: c\n") == ["line 1: mapping values are not allowed here"]


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == ["the file is empty"]
    assert problems(tmp_path, "- 1\n- 2\n") == ["expected a mapping at the top level, got a list"]


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_configuration(missing)
    assert info.value.problems == [f"{missing}: cannot read: No such file or directory"]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as info:
        load_configuration(binary)
    assert info.value.problems == [f"{binary}: not valid UTF-8"]


def test_metric_section(tmp_path: Path) -> None:
    from proxy.config.configuration import MetricConfig, load_configuration

    path = tmp_path / "config.yaml"
    path.write_text(
        HEADER
        + "spec:\n  metric:\n    enabled: true\n    latencyDistributionBuckets: [5, 1, 50]\n"
        + "    http:\n      increasedCardinality: false\n      excludeVerbs: true\n"
        + "      pathMatching: ['/orders/{id}', /items]\n"
    )
    assert load_configuration(path).metric == MetricConfig(
        enabled=True,
        increased_cardinality=False,
        path_matching=("/orders/{id}", "/items"),
        exclude_verbs=True,
        latency_buckets_ms=(1.0, 5.0, 50.0),
    )


def test_metric_problems_all_at_once(tmp_path: Path) -> None:
    text = (
        HEADER
        + "spec:\n  metrics:\n    enabled: yes please\n    recordErrorCodes: true\n"
        + "    rules: [{name: x}]\n    latencyDistributionBuckets: [0]\n"
        + "    http:\n      pathMatchin: [/a]\n      pathMatching: [a]\n"
    )
    assert problems(tmp_path, text) == [
        "spec.metrics.enabled: expected true or false, got a string",
        "spec.metrics.recordErrorCodes: error-code metrics are not supported yet by tether",
        "spec.metrics.rules: metric label rules are not supported yet by tether",
        "spec.metrics.latencyDistributionBuckets: expected a list of positive numbers"
        " (milliseconds)",
        'spec.metrics.http.pathMatchin: unknown field (did you mean "pathMatching"?)',
        "spec.metrics.http.pathMatching: expected a list of paths starting with /",
    ]


def test_an_environment_problem_is_reported_once_with_a_tracing_section(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "spec:\n  tracing: {samplingRate: '1'}\n")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": "maybe"}
    with pytest.raises(ConfigError) as info:
        load_configuration(path, env)
    assert info.value.problems == [
        'environment: OTEL_EXPORTER_OTLP_INSECURE: "maybe" is not true or false'
    ]


def test_tracing_problems_come_with_the_others_in_file_order(tmp_path: Path) -> None:
    text = HEADER + "spec:\n  metric: {enabled: 2}\n  tracing: {stdout: 1}\n  secrets: {}\n"
    assert problems(tmp_path, text) == [
        "spec.metric.enabled: expected true or false, got an integer",
        "spec.tracing.stdout: expected true or false, got an integer",
        "spec.secrets: not supported yet by tether",
    ]
