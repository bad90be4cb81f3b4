"""The Configuration and Resiliency loaders read a duration, and word a mistake, the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.configuration import ConfigError, load_configuration
from resiliency.loader import load_texts

CONFIGURATION = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: c}}
spec:
  nameResolution:
    component: sqlite
    configuration: {{updateInterval: {value}}}
"""
RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: r}}
spec:
  policies:
    retries: {{r: {{duration: {value}}}}}
"""
CONFIG_FIELD = "spec.nameResolution.configuration.updateInterval"
RESILIENCY_FIELD = "spec.policies.retries.r.duration"


def configuration_result(tmp_path: Path, value: str) -> float | str:
    """The update interval in seconds, or the problem said about it."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIGURATION.format(value=value), encoding="utf-8")
    try:
        return load_configuration(path).name_resolution.update_interval
    except ConfigError as exc:
        [problem] = exc.problems
        return problem.removeprefix(f"{path}: {CONFIG_FIELD}: ")


def resiliency_result(value: str) -> float | str:
    config, report = load_texts([("res.yaml", RESILIENCY.format(value=value))])
    if report.ok:
        return config.retries["r"].duration
    [problem] = report.lines()
    return problem.removeprefix(f"res.yaml: {RESILIENCY_FIELD}: ")


# Go's time.ParseDuration decides what is a duration; negative durations are refused in
# both files, with one wording. The sqlite resolver's own limits (whole seconds, at
# least 1s) apply only to updateInterval, after the duration was read.
@pytest.mark.parametrize(
    ("value", "both"),
    [
        ('"0"', 0.0),
        ('"-5s"', '"-5s" is negative; durations must be 0 or more'),
        ('"5 s"', '"5 s" is not a duration'),
        ('"1h2m"', 3720.0),
        ('""', '"" is not a duration'),
        ('"+5s"', 5.0),
        ('"1.5s"', 1.5),
        ("[5s]", "expected a duration, got a list"),
        ("true", "expected a duration, got true/false"),
        ('"1m30"', '"1m30" is not a duration'),
        ('"5d"', '"5d" is not a duration'),
    ],
)
def test_same_duration_in_both_files_gives_the_same_answer(
    tmp_path: Path, value: str, both: float | str
) -> None:
    assert resiliency_result(value) == both
    configured = configuration_result(tmp_path, value)
    if isinstance(both, float) and (both < 1 or both != int(both)):
        # Read the same, then refused by the resolver's own limits.
        assert isinstance(configured, str)
        assert "too short" in configured or "whole number of seconds" in configured
    else:
        assert configured == both


def test_same_mistake_in_both_files_has_the_same_wording(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("apiVersion: v2\nkind: Configuration\nmetadata: [x]\nspec: {}\n")
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    configuration = [line.removeprefix(f"{path}: ") for line in info.value.problems]
    _, report = load_texts([("res.yaml", "apiVersion: v2\nkind: Resiliency\nmetadata: [x]\n")])
    resiliency = [line.removeprefix("res.yaml: ") for line in report.lines()]
    assert configuration == [
        'apiVersion: expected "dapr.io/v1alpha1", got "v2"',
        "metadata: expected a mapping, got a list",
    ]
    assert resiliency[:2] == configuration
    assert resiliency[2:] == ["spec: missing"]


def test_same_type_mistakes_in_both_files_have_the_same_wording(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: 5}\n"
        "spec: {metric: {enabled: maybe}, nameResolution: [sqlite]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    assert [line.removeprefix(f"{path}: ") for line in info.value.problems] == [
        "metadata.name: expected a string, got an integer",
        "spec.metric.enabled: expected true or false, got a string",
        "spec.nameResolution: expected a mapping, got a list",
    ]
    text = (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: 5}\n"
        "spec: {policies: {retries: {r: {jitter: maybe}}}, targets: [apps]}\n"
    )
    _, report = load_texts([("res.yaml", text)])
    assert [line.removeprefix("res.yaml: ") for line in report.lines()] == [
        "metadata.name: expected a string, got an integer",
        "spec.policies.retries.r.jitter: expected true or false, got a string",
        "spec.targets: expected a mapping, got a list",
    ]


def test_a_document_that_is_not_a_mapping_is_worded_the_same(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- 1\n")
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    _, report = load_texts([("res.yaml", "- 1\n")])
    assert [line.removeprefix(f"{path}: ") for line in info.value.problems] == [
        line.removeprefix("res.yaml: ") for line in report.lines()
    ]
