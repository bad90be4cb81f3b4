"""Load Resiliency documents from files and folders, validate them all, and merge the valid ones.

A document with any problem is rejected as a whole and the others are kept, as
Dapr keeps serving with the valid ones; ``LoadReport.raise_for_problems()`` is
the ``--strict-config`` behaviour. Documents of another ``kind`` and documents
scoped to other apps are not problems: they are reported as notes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resiliency.errors import ConfigInvalid
from resiliency.policies import ResiliencyConfig, frozen_map
from resiliency.validation import KIND, ParsedDocument, validate_document
from yamlcheck import (
    Location,
    Problem,
    Problems,
    YamlLimitError,
    load_all_bounded,
    read_text,
    show,
    suggestion,
    yaml_error,
)

_POLICY_KINDS = (
    ("timeouts", "timeouts", "timeout"),
    ("retries", "retries", "retry"),
    ("circuitBreakers", "circuit_breakers", "circuitBreaker"),
)


@dataclass(frozen=True)
class LoadReport:
    """What loading found: problems (documents rejected), notes (documents skipped on purpose)."""

    problems: tuple[Problem, ...] = ()
    notes: tuple[Problem, ...] = ()
    rejected: tuple[Location, ...] = ()  # rejected documents, unreadable or missing files

    @property
    def ok(self) -> bool:
        """True when there is no problem at all."""
        return not self.problems

    def lines(self) -> tuple[str, ...]:
        """Every problem as "FILE: field.path: message", in file order."""
        return tuple(str(problem) for problem in self.problems)

    def raise_for_problems(self) -> None:
        """Raise ConfigInvalid listing every problem (``--strict-config``)."""
        if self.problems:
            raise ConfigInvalid(self.lines())


@dataclass(frozen=True)
class _Entry:
    location: Location
    document: ParsedDocument


def resiliency_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Expand folders to their ``*.yaml``/``*.yml`` files (not recursive, sorted), keep files."""
    files: list[Path] = []
    problems: list[Problem] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(Location(str(path)), "", "no such file or folder"))
    return files, problems


def load_resiliency(
    paths: Iterable[str | Path], app_id: str | None = None
) -> tuple[ResiliencyConfig, LoadReport]:
    """Load every Resiliency document under ``paths`` for ``app_id`` (None: ignore scopes)."""
    files, problems = resiliency_files(paths)
    sources: list[tuple[str, str]] = []
    for file in files:
        unreadable = Problems(str(file))
        text = read_text(file, unreadable)
        if text is not None:
            sources.append((str(file), text))
        problems.extend(unreadable)
    config, report = load_texts(sources, app_id)
    return config, LoadReport(
        problems=(*problems, *report.problems),
        notes=report.notes,
        rejected=(*(p.location for p in problems), *report.rejected),
    )


def load_texts(
    sources: Iterable[tuple[str, str]], app_id: str | None = None
) -> tuple[ResiliencyConfig, LoadReport]:
    """Like ``load_resiliency`` for (file name, YAML text) pairs already in memory."""
    problems: list[Problem] = []
    notes: list[Problem] = []
    rejected: list[Location] = []
    entries: list[_Entry] = []
    broken: list[tuple[Location, dict[Any, Any]]] = []  # rejected; references checked later
    declared: dict[str, set[str]] = {field: set() for _, _, field in _POLICY_KINDS}
    for file, text in sources:
        import yaml  # only with a file to read: PyYAML is ~1 MB of a sidecar

        try:
            documents = load_all_bounded(text)
        except YamlLimitError as exc:
            problems.append(Problem(Location(file), "", str(exc)))
            rejected.append(Location(file))
            continue
        except yaml.YAMLError as exc:
            problems.append(Problem(Location(file), "", yaml_error(exc)))
            rejected.append(Location(file))
            continue
        for index, document in enumerate(documents, start=1):
            found = Problems(file, index if len(documents) > 1 else None)
            _declare_raw_names(document, declared)
            entry = _read_document(found, document, app_id, notes)
            problems.extend(found)
            if entry is False:
                rejected.append(found.location)
                if isinstance(document, dict) and document.get("kind") == KIND:
                    broken.append((found.location, document))
            elif entry is not None and entry is not True:
                entries.append(entry)
    # A document with schema errors still gets its dangling references reported,
    # so one run of `tether resiliency check` shows every problem.
    for location, document in broken:
        problems.extend(_raw_unknown_references(location, document, declared))
    accepted = _merge_checks(entries, problems)
    rejected.extend(entry.location for entry in entries if entry not in accepted)
    config = _merge(accepted)
    return config, LoadReport(tuple(problems), tuple(notes), tuple(rejected))


def _read_document(
    found: Problems, document: object, app_id: str | None, notes: list[Problem]
) -> _Entry | bool | None:
    """An entry, False when rejected, True/None when skipped (other kind, scope, empty)."""
    if document is None:
        return None
    fields = found.document(document)
    if fields is None:
        return False
    kind = fields.get("kind")
    if kind != KIND:
        what = f"kind {show(kind)}" if kind is not None else "no kind"
        notes.append(Problem(found.location, "", f"skipped: {what} is not {KIND}"))
        return True
    parsed = validate_document(fields, found)
    if parsed is None:
        return False
    if app_id is not None and parsed.scopes and app_id not in parsed.scopes:
        scopes = ", ".join(parsed.scopes)
        what = f"skipped: {parsed.name} is scoped to [{scopes}], not {show(app_id)}"
        notes.append(Problem(found.location, "", what))
        return True
    return _Entry(found.location, parsed)


def _raw_section(document: object, *keys: str) -> dict[Any, Any]:
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document if isinstance(document, dict) else {}


def _declare_raw_names(document: object, declared: dict[str, set[str]]) -> None:
    if not isinstance(document, dict) or document.get("kind") != KIND:
        return
    for kind, _, field in _POLICY_KINDS:
        declared[field].update(
            str(name) for name in _raw_section(document, "spec", "policies", kind)
        )


def _raw_unknown_references(
    location: Location, document: dict[Any, Any], declared: dict[str, set[str]]
) -> list[Problem]:
    label = {"timeout": "timeout", "retry": "retry", "circuitBreaker": "circuit breaker"}
    problems = []
    for app_id, target in _raw_section(document, "spec", "targets", "apps").items():
        if not isinstance(target, dict):
            continue
        for field, names in declared.items():
            name = target.get(field)
            if isinstance(name, str) and name not in names:
                problems.append(
                    Problem(
                        location,
                        f"spec.targets.apps.{app_id}.{field}",
                        f"unknown {label[field]} policy {show(name)}"
                        + suggestion(name, sorted(names)),
                    )
                )
    return problems


def _names(entry: _Entry, attribute: str) -> Mapping[str, Any]:
    value: Mapping[str, Any] = getattr(entry.document, attribute)
    return value


def _merge_checks(entries: list[_Entry], problems: list[Problem]) -> list[_Entry]:
    """Reject documents that redefine a name or refer to a policy nobody defines."""
    accepted: list[_Entry] = []
    owners: dict[tuple[str, str], Location] = {}
    kinds = [*((kind, attribute) for kind, attribute, _ in _POLICY_KINDS), ("apps", "apps")]
    for entry in entries:
        clashes = [
            Problem(entry.location, _path(kind, name), f"already defined in {owners[(kind, name)]}")
            for kind, attribute in kinds
            for name in _names(entry, attribute)
            if (kind, name) in owners
        ]
        if clashes:
            problems.extend(clashes)
            continue
        for kind, attribute in kinds:
            for name in _names(entry, attribute):
                owners[(kind, name)] = entry.location
        accepted.append(entry)
    # Rejecting a document removes its policies, which may strand another's references.
    changed = True
    while changed:
        changed = False
        for entry in list(accepted):
            missing = _unknown_references(entry, accepted)
            if missing:
                problems.extend(missing)
                accepted.remove(entry)
                changed = True
    return accepted


def _path(kind: str, name: str) -> str:
    return f"spec.targets.apps.{name}" if kind == "apps" else f"spec.policies.{kind}.{name}"


def _unknown_references(entry: _Entry, accepted: list[_Entry]) -> list[Problem]:
    known = {
        field: sorted(name for other in accepted for name in _names(other, attribute))
        for _, attribute, field in _POLICY_KINDS
    }
    label = {"timeout": "timeout", "retry": "retry", "circuitBreaker": "circuit breaker"}
    problems = []
    for app_id, target in entry.document.apps.items():
        references = {
            "timeout": target.timeout,
            "retry": target.retry,
            "circuitBreaker": target.circuit_breaker,
        }
        for field, name in references.items():
            if name is not None and name not in known[field]:
                problems.append(
                    Problem(
                        entry.location,
                        f"spec.targets.apps.{app_id}.{field}",
                        f"unknown {label[field]} policy {show(name)}"
                        + suggestion(name, known[field]),
                    )
                )
    return problems


def _merge(entries: list[_Entry]) -> ResiliencyConfig:
    timeouts: dict[str, Any] = {}
    retries: dict[str, Any] = {}
    breakers: dict[str, Any] = {}
    apps: dict[str, Any] = {}
    for entry in entries:
        timeouts.update(entry.document.timeouts)
        retries.update(entry.document.retries)
        breakers.update(entry.document.circuit_breakers)
        apps.update(entry.document.apps)
    return ResiliencyConfig(
        timeouts=frozen_map(timeouts),
        retries=frozen_map(retries),
        circuit_breakers=frozen_map(breakers),
        apps=frozen_map(apps),
        resource_names=tuple(entry.document.name for entry in entries),
    )
