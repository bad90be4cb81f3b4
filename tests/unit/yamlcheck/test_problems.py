"""The one problem collector: what each check accepts, and how each mistake is worded."""

from __future__ import annotations

from yamlcheck import Location, Problem, Problems


def lines(problems: Problems) -> list[str]:
    return problems.items


def test_a_problem_is_where_which_field_and_what() -> None:
    problem = Problem(Location("a.yaml", 2), "spec.x", "missing")
    assert str(problem) == "a.yaml: document 2: spec.x: missing"
    assert str(Problem(Location("a.yaml"), "", "line 3: bad")) == "a.yaml: line 3: bad"


def test_mapping_reports_wrong_type_odd_keys_and_unknown_fields() -> None:
    problems = Problems("f.yaml")
    assert problems.mapping("spec", [1]) is None
    fields = problems.mapping("spec", {"policies": 1, "polices": 2, 5: 3}, ("policies",))
    assert fields == {"policies": 1}
    assert lines(problems) == [
        "f.yaml: spec: expected a mapping, got a list",
        'f.yaml: spec.polices: unknown field (did you mean "policies"?)',
        "f.yaml: spec.5: field names must be strings",
    ]


def test_document_and_literal_fields() -> None:
    problems = Problems("f.yaml", 3)
    assert problems.document("text") is None
    problems.literal({"kind": "Other"}, "kind", "Resiliency")
    problems.literal({}, "apiVersion", "dapr.io/v1alpha1")
    problems.literal({"apiVersion": 1}, "apiVersion", "dapr.io/v1alpha1")
    assert lines(problems) == [
        "f.yaml: document 3: expected a mapping at the top level, got a string",
        'f.yaml: document 3: kind: expected "Resiliency", got "Other"',
        'f.yaml: document 3: apiVersion: missing (expected "dapr.io/v1alpha1")',
        'f.yaml: document 3: apiVersion: expected "dapr.io/v1alpha1", got an integer',
    ]


def test_scalar_checks() -> None:
    problems = Problems("f.yaml")
    assert problems.string("a", "") == ""
    assert problems.name("b", "") is None
    assert problems.name("b", None) is None
    assert problems.boolean("c", "yes") is None
    assert problems.integer("d", True, 0) is None
    assert problems.integer("d", -2, -1, " (unlimited)") is None
    assert problems.number("e", 2, 0.0, 1.0) is None
    assert problems.number("e", "x", 0.0, None) is None
    assert problems.duration("f", "-1s") is None
    assert problems.duration("g", 250, bare_milliseconds=True) == 0.25
    problems.env("OTEL_X", "bad")
    assert lines(problems) == [
        "f.yaml: b: must not be empty",
        "f.yaml: b: expected a string, got empty",
        "f.yaml: c: expected true or false, got a string",
        "f.yaml: d: expected an integer, got true/false",
        "f.yaml: d: must be -1 (unlimited) or more, not -2",
        "f.yaml: e: must be between 0 and 1, not 2",
        "f.yaml: e: expected a number, got a string",
        'f.yaml: f: "-1s" is negative; durations must be 0 or more',
        "environment: OTEL_X: bad",
    ]
    assert len(problems) == 9
    assert [p.location for p in problems][-1] == Location("environment")
