from __future__ import annotations

import pytest

from resiliency.errors import TripExpressionError
from resiliency.trip import compile_trip

COUNTS = {
    "requests": 10,
    "totalSuccesses": 2,
    "totalFailures": 8,
    "consecutiveSuccesses": 0,
    "consecutiveFailures": 6,
}


@pytest.mark.parametrize(
    ("source", "result"),
    [
        ("consecutiveFailures > 5", True),
        ("consecutiveFailures > 6", False),
        ("consecutiveFailures >= 6 && requests == 10", True),
        ("requests > 0 && totalFailures * 100 / requests >= 50", True),
        ("!(requests == 10) || false", False),
        ("totalSuccesses + totalFailures == requests", True),
        ("requests - 2 * 3 == 4 && requests % 3 == 1", True),
        ("-7 / 2 == -3 && -7 % 2 == -1", True),  # truncation toward zero, as CEL
        ("(consecutiveFailures > 1) == true", True),
        ("true", True),
        ("false != false", False),
        ("requests / 0 > 1", False),  # eval error counts as false
        ("requests / 0 > 1 || true", True),  # CEL's || absorbs the error
        ("requests / 0 > 1 && true", False),
        ("9223372036854775807 + requests > 0", False),  # overflow is an error
        ("  consecutiveFailures>5  ", True),
    ],
)
def test_evaluates(source: str, result: bool) -> None:
    assert compile_trip(source).evaluate(COUNTS) is result


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "consecutiveFailure > 5",
            'unknown variable "consecutiveFailure" at column 1'
            ' (did you mean "consecutiveFailures"?)',
        ),
        ("x > 1", 'unknown variable "x" at column 1'),
        ("size(requests) > 1", 'function call "size" at column 1 is not supported'),
        ('"a" == "a"', "string literal at column 1 is not supported"),
        ("requests > 1.5", 'float literal "1.5" at column 12 is not supported (integers only)'),
        ("requests > 0x10", 'number "0x10" at column 12 is not supported (integers only)'),
        ("requests = 1", '"=" at column 10 is not an operator (did you mean "=="?)'),
        ("true & false", '"&" at column 6 is not an operator (did you mean "&&"?)'),
        ("requests > 1 2", 'unexpected "2" at column 14'),
        ("requests >", "unexpected end of expression at column 11"),
        ("(requests > 1", 'expected ")" at column 14'),
        ("requests + 1", "the expression gives an integer; it must give true or false"),
        ("requests > true", '">" at column 10 needs integers on both sides'),
        ("requests && true", '"&&" at column 10 needs true/false on both sides'),
        ("requests == true", '"==" at column 10 compares an integer with true/false'),
        ("!requests", '"!" at column 1 needs true/false, not an integer'),
        ("requests.size > 1", 'unexpected character "." at column 9'),
        ("1 < 2 < 3", '"<" at column 7 needs integers on both sides'),
        ("99999999999999999999 > 1", "integer at column 1 does not fit in 64 bits"),
        ("   ", "the expression is empty"),
    ],
)
def test_refuses(source: str, message: str) -> None:
    with pytest.raises(TripExpressionError) as info:
        compile_trip(source)
    assert str(info.value) == message


def test_equal_sources_compile_equal() -> None:
    assert compile_trip("requests > 1") == compile_trip("requests > 1")
