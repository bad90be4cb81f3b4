"""Reading a YAML file's text, and YAML's own errors as one problem line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from yamlcheck.loading import YamlLimitError, check_size, load_all_bounded
from yamlcheck.problems import Problems

if TYPE_CHECKING:
    import yaml


def read_text(path: Path, problems: Problems) -> str | None:
    """The file's text, or None after adding why it cannot be read (too large included)."""
    try:
        check_size(path.stat().st_size)
        return path.read_text(encoding="utf-8")
    except YamlLimitError as exc:
        problems.add_file(str(exc))
    except UnicodeDecodeError:
        problems.add_file("not valid UTF-8")
    except OSError as exc:
        problems.add_file(f"cannot read: {exc.strerror or exc}")
    return None


def yaml_error(exc: yaml.YAMLError) -> str:
    """``line N: what`` for a YAML syntax error (PyYAML counts lines from 0)."""
    import yaml  # loaded already: the caller caught its error

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        return what if mark is None else f"line {mark.line + 1}: {what}"
    return f"invalid YAML: {exc}"


def read_document(path: Path, problems: Problems) -> object:
    """The one YAML document in ``path`` (None when empty), read within the limits of
    ``yamlcheck.loading``; None after adding why it cannot be had."""
    text = read_text(path, problems)
    if text is None:
        return None
    import yaml  # only with a file to read: PyYAML is ~1 MB of a sidecar

    try:
        documents = load_all_bounded(text)
    except YamlLimitError as exc:
        problems.add_file(str(exc))
        return None
    except yaml.YAMLError as exc:
        problems.add_file(yaml_error(exc))
        return None
    if len(documents) > 1:
        problems.add_file(f"expected one YAML document, found {len(documents)}")
        return None
    return documents[0] if documents else None
