"""YAML text is bounded before anything walks it: alias bombs, self-referring
aliases and oversized files are refused with a message; ordinary anchors work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yamlcheck import MAX_FILE_BYTES, Problems, YamlLimitError, load_all_bounded, loading, read_text


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic nested-alias document: ``width ** levels`` values once expanded."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    text = alias_bomb()
    assert len(text) < 700
    with pytest.raises(YamlLimitError, match="expands to more than 250,000 values"):
        load_all_bounded(text)


def test_the_bound_sits_exactly_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "MAX_EXPANDED_VALUES", 1000)
    # A flat list of n scalars is n + 1 values, inside its mapping n + 3.
    fits = 1000 - 3
    assert len(load_all_bounded(f"a: [{', '.join(['1'] * fits)}]")[0]["a"]) == fits
    with pytest.raises(YamlLimitError, match="more than 1,000 values"):
        load_all_bounded(f"a: [{', '.join(['1'] * (fits + 1))}]")


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(YamlLimitError, match="line 1: an alias refers to a value that contains it"):
        load_all_bounded("a: &x [1, *x]\n")


def test_ordinary_anchors_and_several_documents_load_as_safe_load_all() -> None:
    text = "base: &b {timeout: 5s}\nuse: *b\n---\nsecond: 2\n"
    assert load_all_bounded(text) == list(yaml.safe_load_all(text))


def test_syntax_errors_stay_yaml_errors() -> None:
    with pytest.raises(yaml.YAMLError):
        load_all_bounded("a: [1, 2\n")


def test_oversized_text_and_files_are_refused(tmp_path: Path) -> None:
    big = "a: " + "x" * MAX_FILE_BYTES + "\n"
    with pytest.raises(YamlLimitError, match="over the 1,048,576-byte limit"):
        load_all_bounded(big)
    path = tmp_path / "big.yaml"
    path.write_text(big)
    problems = Problems(str(path))
    assert read_text(path, problems) is None
    assert problems.items == [
        f"{path}: the file is {len(big):,} bytes, over the 1,048,576-byte limit for YAML files"
    ]
