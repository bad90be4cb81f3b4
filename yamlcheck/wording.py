"""How every message names YAML values and types, and suggests a near-miss field name."""

from __future__ import annotations

import json


def type_name(value: object) -> str:
    """How a message names a YAML value's type."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def show(value: object) -> str:
    """A YAML value the way messages quote it: strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def suggestion(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or "" when none is close."""
    import difflib  # only when there is a mistake to word

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {show(close[0])}?)" if close else ""
