"""Go durations, as Go's ``time.ParseDuration`` reads them, and duration fields of YAML files.

``parse_go_duration`` follows Go exactly: "0" and signed values ("+5s", "-5s") are
durations, a number without a unit is not (except "0"), nothing is stripped.
``read_duration`` is what a YAML field accepts: no field of Dapr's makes sense
negative, so negatives are refused there, in one wording for every file.
"""

from __future__ import annotations

import re

from yamlcheck.wording import show, type_name

_UNIT_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, as Go accepts
    "\u03bcs": 1_000,  # Greek small mu, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# A number (digits before or after the point, or both) and whatever letters follow it.
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_MAX_NANOSECONDS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
_WHOLE_MILLISECONDS = re.compile(r"[0-9]+")


class DurationError(ValueError):
    """A value is not a duration; the message says why, without the field path."""


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``1h2m3.5s`` or ``-250ms``, as Go reads it."""
    body = text[1:] if text[:1] in ("+", "-") else text
    negative = text.startswith("-")
    if body == "0":
        return 0.0
    if _NUMBER.fullmatch(text):
        raise DurationError(f"{show(text)} has no unit (write e.g. {show(body + 's')})")
    if not body:
        raise DurationError(f"{show(text)} is not a duration")
    nanoseconds = 0
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        assert match is not None  # every group may be empty
        whole, fraction, unit = match[1], match[2], match[3]
        scale = _UNIT_NANOSECONDS.get(unit)
        if (not whole and not fraction) or scale is None:
            raise DurationError(f"{show(text)} is not a duration")
        # Go truncates each part to whole nanoseconds: exact integer floor division
        # (all non-negative), with no float rounding and no fractions/decimal import.
        value = int(whole or 0) * scale
        if fraction:
            value += int(fraction) * scale // 10 ** len(fraction)
        nanoseconds += value
        position = match.end()
    if nanoseconds > _MAX_NANOSECONDS + (1 if negative else 0):
        raise DurationError(f"{show(text)} is too long (at most about 292 years)")
    seconds = nanoseconds / 1e9
    return -seconds if negative and seconds else seconds


def read_duration(value: object, *, bare_milliseconds: bool = False) -> float:
    """A YAML duration field in seconds: a Go duration string, 0 or more.

    With ``bare_milliseconds`` a whole number (``500`` or ``"500"``) is milliseconds,
    as Dapr decodes Resiliency fields; elsewhere a number without a unit is refused,
    since in YAML it is more often a forgotten unit than a deliberate choice.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(f"expected a duration, got {type_name(value)}")
    if isinstance(value, str) and bare_milliseconds and _WHOLE_MILLISECONDS.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and bare_milliseconds:
        seconds = value / 1000.0
    elif isinstance(value, int | float):
        if value != 0 or isinstance(value, float):
            shown = show(value)
            hint = f"write e.g. {show(shown + 's')}"
            if bare_milliseconds:
                raise DurationError(f"{shown} is not a duration ({hint})")
            raise DurationError(f"{shown} has no unit ({hint})")
        seconds = 0.0
    else:
        seconds = parse_go_duration(value)
    if seconds < 0:
        raise DurationError(f"{show(value)} is negative; durations must be 0 or more")
    return seconds
