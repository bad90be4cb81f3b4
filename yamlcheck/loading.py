"""Parsing YAML text with bounds, for every file tether reads.

A YAML file can be small and still expand to billions of values through nested
aliases (the "billion laughs" alias bomb: 637 bytes kept a loader busy for minutes
and past 400 MB), or refer to itself through an alias so that any walk over it never
ends. So every document is composed into YAML's node graph first, its size once
aliases are expanded is counted over that graph (each node counted once, in time
linear in the file), and a document too large or recursive is refused before any
Python objects are built or walked. Files are also limited in size.
"""

from __future__ import annotations

from typing import Any

# Kubernetes keeps a whole object under 1.5 MiB and a ConfigMap under 1 MiB; no
# Resiliency or Configuration file of a sane operator comes near.
MAX_FILE_BYTES = 1024 * 1024
# Values (scalars, lists, mappings, keys included) a document may expand to. A 1 MiB
# file without aliases holds fewer than this.
MAX_EXPANDED_VALUES = 250_000


class YamlLimitError(ValueError):
    """The text is over a limit; the message says which, without the file name."""


def check_size(size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise YamlLimitError(
            f"the file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for YAML files"
        )


def load_all_bounded(text: str) -> list[Any]:
    """Every document in ``text``, as ``yaml.safe_load_all`` gives them, within the limits.

    Raises YamlLimitError when over a limit, yaml.YAMLError when the text is not YAML.
    """
    import yaml  # only with a file to read: PyYAML is ~1 MB of a sidecar

    check_size(len(text.encode("utf-8", errors="surrogatepass")))
    # The pure-Python loader, as safe_load_all: its syntax errors say what it found.
    loader = yaml.SafeLoader(text)
    try:
        documents: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            _check_expansion(node)
            documents.append(loader.construct_document(node))
        return documents
    finally:
        loader.dispose()


def _check_expansion(root: Any) -> None:
    """Refuse a node graph that aliases expand past the limit, or that contains itself."""
    import yaml

    sizes: dict[int, int] = {}  # id(node) -> its expanded size, once known
    on_path: set[int] = set()
    # Iterative post-order walk: (node, children pushed?) pairs.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node, yaml))
            if total > MAX_EXPANDED_VALUES:
                raise YamlLimitError(
                    f"line {node.start_mark.line + 1}: the document expands to more than "
                    f"{MAX_EXPANDED_VALUES:,} values through its aliases"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlLimitError(
                f"line {node.start_mark.line + 1}: an alias refers to a value that contains it"
            )
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node, yaml):
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
