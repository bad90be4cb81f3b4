"""Property tests: the trip-expression parser, the duration parser and both YAML loaders
turn any input into a result or problems that say where and what, never an exception;
and a valid generated document loads to exactly the values it was generated from."""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.configuration import ConfigError, load_configuration
from resiliency.errors import TripExpressionError
from resiliency.loader import load_texts
from resiliency.policies import BackoffKind
from resiliency.trip import VARIABLES, compile_trip
from yamlcheck import DurationError, Location, parse_go_duration, read_duration, show

TOKENS = st.sampled_from(
    [*VARIABLES, "0", "5", "-1", "true", "false", "==", "!=", "<", "<=", ">", ">=", "&&", "||",
     "!", "+", "-", "*", "/", "%", "(", ")", "x", "1.5", "'s'", "f(", "=", "&", "|"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, min_size=1, max_size=12))
def test_trip_compiles_or_says_why(tokens: list[str]) -> None:
    source = " ".join(tokens)
    try:
        expression = compile_trip(source)
    except TripExpressionError as exc:
        assert str(exc)
        return
    counters = dict.fromkeys(VARIABLES, 3)
    assert expression.evaluate(counters) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_trip_on_arbitrary_text(source: str) -> None:
    with contextlib.suppress(TripExpressionError):
        compile_trip(source)


# --------------------------------------------------------------------------- durations

UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
PARTS = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=4
)


@settings(max_examples=300, deadline=None)
@given(PARTS, st.sampled_from(["", "+", "-"]))
def test_a_go_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]], sign: str) -> None:
    text = sign + "".join(f"{number}{unit}" for number, unit in parts)
    total = sum(number * UNITS[unit] for number, unit in parts)
    assert parse_go_duration(text) == pytest.approx(-total if sign == "-" else total)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_the_duration_parser_answers_or_says_why(text: str) -> None:
    try:
        seconds = parse_go_duration(text)
    except DurationError as exc:
        # The message quotes exactly the text it refuses, so the user sees what was read.
        assert str(exc).startswith(show(text) + " "), exc
        return
    assert text and text[-1] in "0hmsn"  # every accepted duration ends in a unit (or is 0)
    assert (seconds < 0) == (text.startswith("-") and seconds != 0)


# --------------------------------------------------------------------------- Resiliency loader

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100), st.sampled_from(["5s", "5 s", "-1", "x", ""])
)
KEYS = st.sampled_from(
    ["apiVersion", "kind", "metadata", "spec", "policies", "targets", "apps", "timeouts",
     "retries", "circuitBreakers", "duration", "maxRetries", "policy", "trip", "name",
     "scopes", "matching", "httpStatusCodes", "orders", "general", "timeout", "retry"]
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def unresolved_segments(document: object, field: str) -> int:
    """How many trailing segments of a field path name nothing in the document."""
    segments = [name or int(index) for name, index in SEGMENT.findall(field)]
    node: Any = document
    for position, segment in enumerate(segments):
        in_list = isinstance(node, list) and isinstance(segment, int) and segment < len(node)
        if not in_list and not (isinstance(node, dict) and segment in node):
            return len(segments) - position
        node = node[segment]
    return 0


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=5))
def test_every_resiliency_problem_names_the_file_and_a_field_of_the_document(
    document: dict[str, object],
) -> None:
    document = {"apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", **document}
    config, report = load_texts([("fuzz.yaml", yaml.safe_dump(document))])
    for problem in report.problems:
        assert problem.location == Location("fuzz.yaml")
        assert problem.field, problem  # one document, valid YAML: always about a field
        assert str(problem) == f"fuzz.yaml: {problem.field}: {problem.what}"
        # The path leads into the document; only a missing field (and, for a missing
        # metadata, its name) is not there.
        allowed = 2 if problem.what.startswith("missing") else 0
        if problem.what.startswith("unknown") and "policy" in problem.what:
            allowed = 0  # a reference names a field that is there
        assert unresolved_segments(document, problem.field) <= allowed, problem
    if document.get("kind") == "Resiliency":
        # A Resiliency document is either accepted whole or rejected with reasons.
        assert bool(config.resource_names) != bool(report.problems)
        assert report.rejected == (() if config.resource_names else (Location("fuzz.yaml"),))


# Valid documents shaped like Resiliency files, then one field set to any value: the
# mistakes land deep inside policies and targets, and half the documents stay valid.
NAMES = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
POLICY_NAMES = st.sampled_from(["a", "b", "c"])
ANY_VALUE = st.one_of(
    SCALARS,
    st.sampled_from(["0", "-5s", "1h2m", "1.5s", "+5s", "250", "constant", "exponential",
                     "consecutiveFailures > 3", "requests >", "500-599", "true", "a"]),
    st.lists(SCALARS, max_size=2),
    st.dictionaries(KEYS, SCALARS, max_size=2),
)  # fmt: skip
DURATIONS = st.sampled_from(["0", "1h2m", "1.5s", "+5s", "250", 250, "5s", "10ms"])
TRIPS = st.sampled_from(["consecutiveFailures > 3", "requests > 10 && totalFailures > 2"])
RETRY = st.fixed_dictionaries(
    {},
    optional={
        "duration": DURATIONS,
        "maxRetries": st.integers(-1, 5),
        "policy": st.sampled_from(["constant", "exponential"]),
        "maxInterval": DURATIONS,
        "jitter": st.booleans(),
    },
)
BREAKER = st.fixed_dictionaries(
    {"trip": TRIPS},
    optional={"maxRequests": st.integers(0, 3), "interval": DURATIONS, "timeout": DURATIONS},
)
POLICIES = st.fixed_dictionaries(
    {
        "timeouts": st.dictionaries(POLICY_NAMES, DURATIONS, max_size=3),
        "retries": st.dictionaries(POLICY_NAMES, RETRY, max_size=3),
        "circuitBreakers": st.dictionaries(POLICY_NAMES, BREAKER, max_size=3),
    }
)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    policies = draw(POLICIES)
    apps = {}
    for app_id in draw(st.lists(NAMES, max_size=2, unique=True)):
        target: dict[str, object] = {}
        for kind, field in (("timeouts", "timeout"), ("retries", "retry"),
                            ("circuitBreakers", "circuitBreaker")):  # fmt: skip
            if policies[kind] and draw(st.booleans()):
                target[field] = draw(st.sampled_from(sorted(policies[kind])))
        apps[app_id] = target
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "r"},
        "spec": {"policies": policies, "targets": {"apps": apps}},
    }


def leaf_paths(node: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(node, dict) or not node:
        return [path]
    return [leaf for key, item in node.items() for leaf in leaf_paths(item, (*path, key))]


def set_path(document: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@settings(max_examples=400, deadline=None)
@given(valid_documents(), st.booleans(), st.data())
def test_shaped_resiliency_documents_say_where_or_load_to_what_they_say(
    document: dict[str, Any], corrupt: bool, data: st.DataObject
) -> None:
    if corrupt:
        path = data.draw(st.sampled_from(leaf_paths(document)))
        set_path(document, path, data.draw(ANY_VALUE))
    config, report = load_texts([("shaped.yaml", yaml.safe_dump(document))])
    if document["kind"] != "Resiliency":
        assert (report.problems, config.resource_names) == ((), ())  # another kind: a note
        return
    for problem in report.problems:
        assert problem.location == Location("shaped.yaml")
        allowed = 2 if problem.what.startswith("missing") else 0
        assert unresolved_segments(document, problem.field) <= allowed, problem
    assert bool(config.resource_names) != bool(report.problems)
    assert corrupt or report.ok, report.lines()
    if report.problems:
        return
    # Accepted: every value written is the value loaded.
    policies = document["spec"]["policies"] or {}
    for name, value in (policies.get("timeouts") or {}).items():
        seconds = read_duration(value, bare_milliseconds=True)
        assert config.timeouts[name].per_attempt == (seconds or None)
    for name, fields in (policies.get("retries") or {}).items():
        retry = config.retries[name]
        assert retry.kind.value == fields.get("policy", "constant")
        assert retry.max_retries == fields.get("maxRetries", -1)
        assert retry.jitter is fields.get("jitter", False)
        if "duration" in fields:
            assert retry.duration == read_duration(fields["duration"], bare_milliseconds=True)
    for name, fields in (policies.get("circuitBreakers") or {}).items():
        breaker = config.circuit_breakers[name]
        assert breaker.max_requests == (fields.get("maxRequests") or 1)
        assert breaker.trip == compile_trip(fields["trip"])
    for app_id, fields in ((document["spec"]["targets"] or {}).get("apps") or {}).items():
        target = config.apps[app_id]
        assert (target.timeout, target.retry, target.circuit_breaker) == (
            fields.get("timeout"),
            fields.get("retry"),
            fields.get("circuitBreaker"),
        )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_resiliency_loader_on_arbitrary_text(text: str) -> None:
    _, report = load_texts([("any.yaml", text)])
    for problem in report.problems:
        assert problem.location.file == "any.yaml"
        assert str(problem).startswith(f"{problem.location}: ")


WHOLE_DURATIONS = st.tuples(st.integers(0, 3), st.integers(0, 59), st.integers(0, 59))


def go_text(hours: int, minutes: int, seconds: int, milliseconds: int = 0) -> str:
    return f"{hours}h{minutes}m{seconds}s{milliseconds}ms"


@settings(max_examples=200, deadline=None)
@given(
    NAMES,
    st.sampled_from(["constant", "exponential"]),
    WHOLE_DURATIONS,
    st.integers(0, 999),
    st.integers(-1, 20),
    st.integers(0, 100_000),
)
def test_a_valid_resiliency_document_loads_to_its_values(
    name: str,
    policy: str,
    duration: tuple[int, int, int],
    milliseconds: int,
    max_retries: int,
    timeout_ms: int,
) -> None:
    hours, minutes, seconds = duration
    document: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": name},
        "spec": {
            "policies": {
                "timeouts": {"t": timeout_ms},  # Dapr: a bare integer is milliseconds
                "retries": {
                    "r": {
                        "policy": policy,
                        "duration": go_text(hours, minutes, seconds, milliseconds),
                        "maxRetries": max_retries,
                    }
                },
            },
            "targets": {"apps": {name: {"timeout": "t", "retry": "r"}}},
        },
    }
    config, report = load_texts([("ok.yaml", yaml.safe_dump(document))])
    assert report.lines() == ()
    retry = config.retries["r"]
    expected = hours * 3600 + minutes * 60 + seconds + milliseconds / 1000
    assert retry.duration == pytest.approx(expected)
    assert retry.kind is BackoffKind(policy)
    assert retry.max_retries == max_retries
    assert config.timeouts["t"].per_attempt == (timeout_ms / 1000 or None)
    assert config.apps[name].retry == "r"
    assert config.resource_names == (name,)


# --------------------------------------------------------------------------- Configuration loader

CONFIG_KEYS = st.sampled_from(
    ["apiVersion", "kind", "metadata", "name", "spec", "nameResolution", "component",
     "configuration", "updateInterval", "connectionString", "metric", "enabled", "http",
     "tracing", "samplingRate", "otel", "endpointAddress", "timeout", "mtls"]
)  # fmt: skip
CONFIG_VALUES = st.recursive(
    st.one_of(SCALARS, st.sampled_from(["sqlite", "1s", "0", "-5s", "Configuration"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(CONFIG_KEYS, inner, max_size=4)
    ),
    max_leaves=12,
)


def load_in_temporary_file(text: str) -> tuple[Path, ConfigError | None]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_configuration(path)
        except ConfigError as exc:
            return path, exc
    return path, None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(CONFIG_KEYS, CONFIG_VALUES, max_size=5))
def test_every_configuration_problem_names_the_file_and_a_field(
    document: dict[str, object],
) -> None:
    document = {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", **document}
    path, error = load_in_temporary_file(yaml.safe_dump(document))
    if error is None:
        return
    assert error.problems, "a ConfigError always lists its problems"
    for line in error.problems:
        field, separator, what = line.removeprefix(f"{path}: ").partition(": ")
        assert line.startswith(f"{path}: "), line
        assert separator and what, line
        allowed = 2 if what.startswith("missing") else 0
        assert unresolved_segments(document, field) <= allowed, line


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3600))
def test_a_valid_configuration_update_interval_loads_to_its_value(seconds: int) -> None:
    hours, rest = divmod(seconds, 3600)
    text = (
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n"
        "spec:\n  nameResolution:\n    component: sqlite\n"
        f"    configuration: {{updateInterval: {go_text(hours, rest // 60, rest % 60)}}}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        assert load_configuration(path).name_resolution.update_interval == seconds
