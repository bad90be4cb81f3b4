"""Durations as Dapr reads them in Resiliency files: Go durations or bare milliseconds.

Dapr decodes every duration field through a hook that first tries Go's
``time.ParseDuration`` and then falls back to an integer count of milliseconds,
so ``timeout: 500`` means half a second. Results are float seconds.
"""

from __future__ import annotations

import json
import re

from resiliency.errors import DurationError

# Longer unit names first so "ms" is not read as "m" followed by garbage.
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign, as Go accepts
    "\u03bcs": 1e-6,  # Greek small mu, as Go accepts
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_MILLISECONDS = re.compile(r"\d+")


def show(value: object) -> str:
    """Render a YAML value the way messages quote it: strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_go_duration(text: str) -> float:
    """Parse a Go duration such as ``1h2m3.5s`` or ``500ms`` into seconds; negatives are refused."""
    body = text[1:] if text.startswith("+") else text
    if body.startswith("-"):
        raise DurationError(f"{show(text)} is negative; durations must be 0 or more")
    if body == "0":
        return 0.0
    if not body:
        raise DurationError(f"{show(text)} is not a duration")
    total = 0.0
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        if match is None:
            raise DurationError(f"{show(text)} is not a duration")
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        position = match.end()
    return total


def parse_duration(value: object) -> float:
    """Parse a Resiliency duration field: a Go duration string, or an integer of milliseconds."""
    if isinstance(value, bool):
        raise DurationError(f"{show(value)} is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise DurationError(f"{value} is negative; durations must be 0 or more")
        return value / 1000.0
    if isinstance(value, str):
        stripped = value.strip()
        if _MILLISECONDS.fullmatch(stripped):
            return int(stripped) / 1000.0
        if stripped != value:
            raise DurationError(f"{show(value)} is not a duration")
        return parse_go_duration(value)
    raise DurationError(f"{show(value)} is not a duration")
