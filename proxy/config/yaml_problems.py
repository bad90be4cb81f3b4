"""Collecting every problem in a YAML document as ``FILE: field.path: what is
wrong``, shared by the loaders of Configuration files and their sections."""

from __future__ import annotations

import difflib

# One wording of YAML types for every loader in tether, the Resiliency loader's.
from resiliency.validation import type_name


def unknown_field(path: str, key: str, known: tuple[str, ...]) -> str:
    """``path: unknown field``, with a suggestion for a near miss."""
    matches = difflib.get_close_matches(key, known, n=1)
    hint = f' (did you mean "{matches[0]}"?)' if matches else ""
    return f"{path}: unknown field{hint}"


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, field: str, what: str) -> None:
        self.items.append(f"{self.source}: {field}: {what}")

    def add_raw(self, text: str) -> None:
        self.items.append(f"{self.source}: {text}")

    def env(self, name: str, what: str) -> None:
        self.items.append(f"environment: {name}: {what}")

    def unknown(self, field: str, key: str, known: tuple[str, ...]) -> None:
        """An unknown ``key`` under ``field`` ("" for the top level)."""
        self.add_raw(unknown_field(f"{field}.{key}" if field else key, key, known))

    def mapping(self, field: str, value: object) -> dict[str, object] | None:
        """``value`` as a mapping with string keys; None (and a problem) otherwise."""
        if not isinstance(value, dict):
            self.add(field, f"expected a mapping, got {type_name(value)}")
            return None
        return {str(key): item for key, item in value.items()}

    def string(self, field: str, value: object) -> str | None:
        if not isinstance(value, str):
            self.add(field, f"expected a string, got {type_name(value)}")
            return None
        return value

    def boolean(self, field: str, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.add(field, f"expected true or false, got {type_name(value)}")
            return None
        return value
