"""The code map in the README, enforced: each package imports only what its row
allows, and modules stay small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("proxy", "resiliency", "certs", "yamlcheck", "sentry")
MAX_LINES = 400

# package -> the packages of ours it may import besides itself. proxy's top level
# (cli, runner, sidecar: the wiring) may import anything and has no row.
STAGES = {"proxy.app", "proxy.discovery", "proxy.observability"}
ALLOWED: dict[str, set[str]] = {
    "yamlcheck": set(),
    "certs": set(),
    "resiliency": {"yamlcheck"},
    "proxy.protos": set(),
    "proxy.core": set(),
    # A lean gRPC over HTTP/2 (h2): generic, knows nothing of Dapr or tether.
    "proxy.grpcwire": {"proxy.core"},
    "proxy.discovery": {"proxy.core", "yamlcheck"},
    "proxy.observability": {"proxy.core", "proxy.protos", "yamlcheck"},
    # The gRPC app channel: the lean gRPC client and the AppCallback protos.
    "proxy.app": {"proxy.core", "proxy.observability", "proxy.grpcwire", "proxy.protos"},
    # Settings gather each stage's settings types; nothing of the call path itself.
    "proxy.config": {"proxy.core", "yamlcheck", "resiliency", "certs", *STAGES},
    "proxy.hop": {"proxy.core", "proxy.protos", "proxy.grpcwire", "resiliency", "certs", *STAGES},
    "proxy.edge": {"proxy.core", "proxy.hop", "proxy.app", "proxy.observability"},
    # The Dapr gRPC API: the edge's imports, and the lean gRPC server with its protos.
    "proxy.daprapi": {
        "proxy.core",
        "proxy.hop",
        "proxy.app",
        "proxy.observability",
        "proxy.grpcwire",
        "proxy.protos",
    },
    # gRPC proxying: relays between the API port, peer sidecars and the app's gRPC server.
    "proxy.grpcproxy": {
        "proxy.core",
        "proxy.hop",
        "proxy.app",
        "proxy.grpcwire",
        "proxy.discovery",
        "proxy.observability",
        "resiliency",
        "certs",
    },
    # The CA service: proxy.config for proxy.config.mtls only (Sentry's spec.mtls).
    "sentry": {
        "certs",
        "yamlcheck",
        "proxy.protos",
        "proxy.core",
        "proxy.config",
        "proxy.observability",
    },
}


def package_of(module: str) -> str | None:
    """The row a module belongs to: ``proxy.<sub>`` or a top-level package; None
    for proxy's own top-level modules."""
    parts = module.split(".")
    if parts[0] != "proxy":
        return parts[0]
    if len(parts) >= 2 and (ROOT / "proxy" / parts[1]).is_dir():
        return f"proxy.{parts[1]}"
    return None


def imported(path: Path) -> set[str]:
    """Modules of ours that ``path`` imports (absolute imports; the tree uses no others)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in TOPS}


def sources() -> list[Path]:
    return sorted(
        path
        for top in TOPS
        for path in (ROOT / top).rglob("*.py")
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    )


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_code_map(path: Path) -> None:
    own = package_of(module_name(path))
    if own is None:
        return
    allowed = ALLOWED[own] | {own}
    wrong = sorted(name for name in imported(path) if package_of(name) not in allowed)
    assert not wrong, f"{path.relative_to(ROOT)} ({own}) may not import {wrong}"


def test_every_package_has_a_row() -> None:
    rows = {package_of(module_name(path)) for path in sources()} - {None}
    assert rows == set(ALLOWED)


def test_the_rule_catches_a_stage_reaching_back() -> None:
    # The check itself must be able to fail: an edge import from the hop is refused.
    assert package_of("proxy.edge.dapr_errors") not in ALLOWED["proxy.hop"]
    assert package_of("proxy.cli") is None


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines"
