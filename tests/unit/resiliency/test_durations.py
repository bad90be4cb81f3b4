from __future__ import annotations

import pytest

from resiliency.durations import parse_duration
from resiliency.errors import DurationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("500ms", 0.5),
        ("1h2m3.5s", 3723.5),
        ("10us", 10e-6),
        ("10\u00b5s", 10e-6),
        ("10\u03bcs", 10e-6),
        ("250ns", 250e-9),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("+3s", 3.0),
        ("1m", 60.0),
        ("1ms", 0.001),
        (500, 0.5),
        ("1500", 1.5),
        (0, 0.0),
    ],
)
def test_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 s", '"5 s" is not a duration'),
        ("5", None),
        ("", '"" is not a duration'),
        ("5d", '"5d" is not a duration'),
        ("s", '"s" is not a duration'),
        ("1.5", '"1.5" is not a duration'),
        ("-5s", '"-5s" is negative; durations must be 0 or more'),
        (-5, "-5 is negative; durations must be 0 or more"),
        (1.5, "1.5 is not a duration"),
        (True, "true is not a duration"),
        (None, "null is not a duration"),
        (" 5s", '" 5s" is not a duration'),
    ],
)
def test_refuses(value: object, message: str | None) -> None:
    if message is None:
        assert parse_duration(value) == 0.005
        return
    with pytest.raises(DurationError) as info:
        parse_duration(value)
    assert str(info.value) == message
