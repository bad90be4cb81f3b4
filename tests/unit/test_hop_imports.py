"""The hop stage never imports the edge: errors become responses only at the edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HOP = Path(__file__).resolve().parents[2] / "proxy" / "hop"


def imported_modules(source: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


@pytest.mark.parametrize("source", sorted(HOP.glob("*.py")), ids=lambda path: path.name)
def test_hop_module_does_not_import_the_edge(source: Path) -> None:
    edge = sorted(
        m for m in imported_modules(source) if m == "proxy.edge" or m.startswith("proxy.edge.")
    )
    assert edge == [], f"{source.name} imports {edge}"
