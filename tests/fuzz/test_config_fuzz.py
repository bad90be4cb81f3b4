"""Property tests: the trip-expression parser and the Resiliency loader turn
any input into either a result or clear problems, never an unexpected exception."""

from __future__ import annotations

import contextlib

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from resiliency.errors import TripExpressionError
from resiliency.loader import load_texts
from resiliency.trip import VARIABLES, compile_trip

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


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=5))
def test_loader_reports_problems_for_any_document(document: dict[str, object]) -> None:
    document = {"apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", **document}
    text = yaml.safe_dump(document)
    config, report = load_texts([("fuzz.yaml", text)])
    for line in report.lines():
        assert line.startswith("fuzz.yaml: ")
    assert report.ok == (len(report.problems) == 0)
    assert config is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_loader_on_arbitrary_text(text: str) -> None:
    _, report = load_texts([("any.yaml", text)])
    for line in report.lines():
        assert line.startswith("any.yaml")
