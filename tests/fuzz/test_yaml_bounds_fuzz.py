"""Any YAML built from anchors and aliases, nested as deep and wide as chance makes it,
loads or is refused with a message, always after a bounded amount of work; what loads
equals what PyYAML's own loader builds."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yamlcheck import YamlLimitError, load_all_bounded


@st.composite
def aliased_documents(draw: st.DrawFn) -> str:
    """Levels of anchored flow lists, each naming earlier anchors (or itself) many times."""
    lines = []
    for level in range(draw(st.integers(1, 12))):
        width = draw(st.integers(1, 12))
        items = []
        for _ in range(width):
            choice = draw(st.integers(0, 3))
            if choice == 0 or level == 0:
                items.append(draw(st.sampled_from(["x", "1", "{a: b}", "[]", "''"])))
            elif choice == 3 and draw(st.booleans()):
                items.append(f"*a{level}")  # refers to the list it is in
            else:
                items.append(f"*a{draw(st.integers(0, level - 1))}")
        lines.append(f"k{level}: &a{level} [{', '.join(items)}]")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aliased_documents())
def test_aliases_load_or_are_refused_with_a_line(text: str) -> None:
    try:
        documents = load_all_bounded(text)
    except YamlLimitError as exc:
        assert str(exc).startswith("line ")
        return
    except yaml.YAMLError:
        pytest.fail(f"generated YAML should parse:\n{text}")
    assert documents == list(yaml.safe_load_all(text))
