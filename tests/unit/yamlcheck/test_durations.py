"""One Go-duration parser for every file: Go's ``time.ParseDuration`` answers, then the
YAML field rules (no negatives; bare milliseconds only where Dapr reads them)."""

from __future__ import annotations

import re

import pytest

from yamlcheck import DurationError, parse_go_duration, read_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("+0", 0.0),
        ("-0", 0.0),
        ("0s", 0.0),
        ("5s", 5.0),
        ("+5s", 5.0),
        ("-5s", -5.0),
        ("1h2m", 3720.0),
        ("1h2m3.5s", 3723.5),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("1.5h", 5400.0),
        ("100us", 1e-4),
        ("100\u00b5s", 1e-4),  # micro sign
        ("100\u03bcs", 1e-4),  # Greek small mu
        ("10ns", 1e-8),
        ("1.0000000009s", 1.0),  # Go truncates to whole nanoseconds
        ("1m0.5s", 60.5),
        ("2562047h47m16.854775807s", 9223372036.854775807),  # Go's largest duration
    ],
)
def test_go_accepts(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", '"" is not a duration'),
        ("+", '"+" is not a duration'),
        ("5", '"5" has no unit (write e.g. "5s")'),
        ("-1.5", '"-1.5" has no unit (write e.g. "1.5s")'),
        ("5 s", '"5 s" is not a duration'),
        (" 5s", '" 5s" is not a duration'),  # Go strips nothing
        ("5s ", '"5s " is not a duration'),
        ("5d", '"5d" is not a duration'),
        ("s", '"s" is not a duration'),
        (".s", '".s" is not a duration'),
        ("1m30", '"1m30" is not a duration'),
        ("1..5s", '"1..5s" is not a duration'),
        ("--5s", '"--5s" is not a duration'),
        ("2562048h", '"2562048h" is too long (at most about 292 years)'),
        ("\u0665s", '"\u0665s" is not a duration'),  # Go reads ASCII digits only
    ],
)
def test_go_refuses(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_go_duration(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("-0s", 0.0), ("+3s", 3.0), ("500ms", 0.5), (0, 0.0)],
)
def test_fields_accept_everywhere(value: object, seconds: float) -> None:
    assert read_duration(value) == seconds
    assert read_duration(value, bare_milliseconds=True) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5s", '"-5s" is negative; durations must be 0 or more'),
        ("5 s", '"5 s" is not a duration'),
        ("", '"" is not a duration'),
        (True, "expected a duration, got true/false"),
        (None, "expected a duration, got empty"),
        (["5s"], "expected a duration, got a list"),
        ("1.5", '"1.5" has no unit (write e.g. "1.5s")'),
        ("\u0665\u0660\u0660", '"\u0665\u0660\u0660" is not a duration'),
    ],
)
def test_fields_refuse_everywhere(value: object, message: str) -> None:
    for bare_milliseconds in (False, True):
        with pytest.raises(DurationError) as info:
            read_duration(value, bare_milliseconds=bare_milliseconds)
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "seconds", "message"),
    [
        (500, 0.5, '500 has no unit (write e.g. "500s")'),
        ("1500", 1.5, '"1500" has no unit (write e.g. "1500s")'),
        (-5, "-5 is negative; durations must be 0 or more", '-5 has no unit (write e.g. "-5s")'),
        (1.5, '1.5 is not a duration (write e.g. "1.5s")', '1.5 has no unit (write e.g. "1.5s")'),
    ],
)
def test_bare_numbers_are_milliseconds_only_where_dapr_reads_them_so(
    value: object, seconds: float | str, message: str
) -> None:
    # Dapr decodes Resiliency durations as Go durations, then as whole milliseconds.
    if isinstance(seconds, float):
        assert read_duration(value, bare_milliseconds=True) == seconds
    else:
        with pytest.raises(DurationError, match=f"^{re.escape(seconds)}$"):
            read_duration(value, bare_milliseconds=True)
    with pytest.raises(DurationError) as info:
        read_duration(value)
    assert str(info.value) == message
