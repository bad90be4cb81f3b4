"""Problems found in a YAML file, kept as data (where, which field, what) and worded once.

A loader walks a document with a ``Problems`` collector, which checks value types
and records each mistake; nothing raises on bad input, so every problem of a file
is reported at once. A problem reads ``FILE: field.path: what is wrong`` (with
``: document N`` after the file name in a file of several documents).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from yamlcheck.durations import DurationError, read_duration
from yamlcheck.wording import show, suggestion, type_name


@dataclass(frozen=True)
class Location:
    """A file, and which document of it when it holds several (counted from 1)."""

    file: str
    document: int | None = None

    def __str__(self) -> str:
        return self.file if self.document is None else f"{self.file}: document {self.document}"


@dataclass(frozen=True)
class Problem:
    """One mistake: where, the field path ("" for the file or document as a whole), what."""

    location: Location
    field: str
    what: str

    def __str__(self) -> str:
        where = f"{self.location}: {self.field}" if self.field else str(self.location)
        return f"{where}: {self.what}"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class Problems:
    """Collects the problems of one file (or one document of it) while a loader walks it."""

    def __init__(self, file: str, document: int | None = None) -> None:
        self.location = Location(file, document)
        self.records: list[Problem] = []

    @property
    def source(self) -> str:
        """Where these problems are, as a problem line starts."""
        return str(self.location)

    @property
    def items(self) -> list[str]:
        """Every problem as a line, in the order found."""
        return [str(problem) for problem in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.records)

    def add(self, field: str, what: str) -> None:
        self.records.append(Problem(self.location, field, what))

    def add_file(self, what: str) -> None:
        """A problem of the file (or document) as a whole, such as a YAML syntax error."""
        self.records.append(Problem(self.location, "", what))

    def env(self, name: str, what: str) -> None:
        """A problem of an environment variable read alongside the file."""
        self.records.append(Problem(Location("environment"), name, what))

    def unknown(self, field: str, key: str, known: tuple[str, ...] | list[str]) -> None:
        """An unknown ``key`` under ``field`` ("" for the top level)."""
        self.add(_join(field, key), "unknown field" + suggestion(key, known))

    def document(self, value: object) -> dict[Any, Any] | None:
        """The top level of a document, unchecked, if it is a mapping; else None and a problem."""
        if not isinstance(value, dict):
            self.add_file(f"expected a mapping at the top level, got {type_name(value)}")
            return None
        return value

    def mapping(
        self, field: str, value: object, allowed: tuple[str, ...] | None = None
    ) -> dict[str, Any] | None:
        """``value`` as a mapping with string keys, reporting keys not ``allowed``.

        None (and a problem) when it is not a mapping; keys that are not strings,
        or not allowed, are reported and left out.
        """
        if not isinstance(value, dict):
            self.add(field, f"expected a mapping, got {type_name(value)}")
            return None
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.add(_join(field, show(key)), "field names must be strings")
            elif allowed is not None and key not in allowed:
                self.unknown(field, key, allowed)
            else:
                result[key] = item
        return result

    def literal(self, fields: dict[str, Any], key: str, expected: str) -> None:
        """A field that must hold exactly ``expected``, such as ``apiVersion``."""
        if key not in fields:
            self.add(key, f"missing (expected {show(expected)})")
            return
        value = fields[key]
        if value != expected:
            shown = show(value) if isinstance(value, str) else type_name(value)
            self.add(key, f"expected {show(expected)}, got {shown}")

    def string(self, field: str, value: object) -> str | None:
        if not isinstance(value, str):
            self.add(field, f"expected a string, got {type_name(value)}")
            return None
        return value

    def name(self, field: str, value: object) -> str | None:
        """A string that must not be empty, such as ``metadata.name``."""
        text = self.string(field, value)
        if text is not None and not text:
            self.add(field, "must not be empty")
            return None
        return text

    def boolean(self, field: str, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.add(field, f"expected true or false, got {type_name(value)}")
            return None
        return value

    def integer(self, field: str, value: object, minimum: int, meaning: str = "") -> int | None:
        """A whole number of at least ``minimum`` (``meaning`` explains the minimum)."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field, f"expected an integer, got {type_name(value)}")
            return None
        if value < minimum:
            self.add(field, f"must be {minimum}{meaning} or more, not {value}")
            return None
        return value

    def number(self, field: str, value: object, low: float, high: float | None) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(field, f"expected a number, got {type_name(value)}")
            return None
        if value < low or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if high is not None else f"{low:g} or more"
            self.add(field, f"must be {bounds}, not {value}")
            return None
        return float(value)

    def duration(
        self, field: str, value: object, *, bare_milliseconds: bool = False
    ) -> float | None:
        """Seconds in a duration field (see ``read_duration``); None after a problem."""
        try:
            return read_duration(value, bare_milliseconds=bare_milliseconds)
        except DurationError as exc:
            self.add(field, str(exc))
            return None
