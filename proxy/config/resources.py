"""What tether finds under ``--resources-path``. Only kinds that tether applies
may be present: a file it would read but ignore is refused, so an operator
never believes a policy is in force when it is not."""

from __future__ import annotations

from pathlib import Path

from proxy.core.errors import UsageError
from yamlcheck import MAX_FILE_BYTES, YamlLimitError, load_all_bounded

# Dapr resource kinds tether does not apply yet (Resiliency it does).
_NOT_YET = {
    "Component": "components (state stores, pub/sub, bindings, ...)",
    "HTTPEndpoint": "HTTPEndpoint resources",
    "Subscription": "subscriptions",
    "Configuration": "Configuration in --resources-path (pass it with --config)",
}


def check_resources(paths: tuple[Path, ...]) -> None:
    """Raise UsageError listing every resource file tether cannot apply yet."""
    problems: list[str] = []
    for folder in paths:
        if not folder.is_dir():
            problems.append(f"{folder}: --resources-path is not a folder")
            continue
        for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            import yaml  # only with a file to read: PyYAML is ~1 MB of a sidecar

            try:
                if file.stat().st_size > MAX_FILE_BYTES:
                    raise YamlLimitError(f"over the {MAX_FILE_BYTES:,}-byte limit for YAML files")
                documents = load_all_bounded(file.read_text())
            except (OSError, ValueError, yaml.YAMLError) as exc:
                problems.append(f"{file}: cannot read: {str(exc).splitlines()[0]}")
                continue
            for document in documents:
                kind = document.get("kind") if isinstance(document, dict) else None
                if isinstance(kind, str) and kind in _NOT_YET:
                    problems.append(f"{file}: kind: {kind}: {_NOT_YET[kind]} are not supported yet")
    if problems:
        raise UsageError("\n".join(problems))
