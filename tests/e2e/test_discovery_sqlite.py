"""The embedded ``sqlite`` resolver across machines: sidecars in separate network
namespaces share one registry file (namespaces share the filesystem) and reach each
other over 198.18.0.0/15 with mTLS. Also proves the mesh kit itself.

Needs root and ``ip`` (skipped with the reason elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.mesh import Mesh, Node, mesh_fixture, shares


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    yield from mesh_fixture(tmp_path)


def sqlite_config(mesh: Mesh) -> Path:
    registry = mesh.root / "registry.db"
    return mesh.config(
        "sqlite",
        {
            "nameResolution": {
                "component": "sqlite",
                "configuration": {"connectionString": str(registry), "updateInterval": "1s"},
            }
        },
    )


def start(mesh: Mesh, instances: int) -> tuple[Node, list[Node]]:
    config = sqlite_config(mesh)
    orders = [mesh.node(f"orders{i}", "orders", config=config) for i in range(1, instances + 1)]
    checkout = mesh.node("checkout", "checkout", app=False, config=config)
    return checkout, orders


def test_two_instances_on_two_machines_share_calls(mesh: Mesh) -> None:
    checkout, orders = start(mesh, 2)
    # Every sidecar's internal port is bound to its machine's address, not loopback.
    for node in orders:
        assert f"internal gRPC on {node.address}:50002" in node.sidecar.log()

    results = checkout.invoke("orders", "share", count=40)
    assert [r.status for r in results] == [200] * 40, results
    # The echo app answers with what it received: the call crossed machines.
    assert results[0].json()["path"] == "/share"
    counts = shares(orders)
    assert sum(counts.values()) == 40
    assert all(count > 0 for count in counts.values()), counts


def test_a_killed_instance_costs_few_calls_then_none(mesh: Mesh) -> None:
    checkout, (first, second) = start(mesh, 2)
    wait_until(
        lambda: all(r.ok for r in checkout.invoke("orders", count=10)) and second.received() > 0,
        "both instances are in use",
    )
    second.kill()
    # Its registry row stays until it goes stale; a refused connection evicts it and
    # the call is retried elsewhere, so at most a handful of calls fail.
    after = checkout.invoke("orders", "after", count=30)
    failed = [r for r in after if not r.ok]
    assert len(failed) <= 3, failed
    before = first.received()
    steady = checkout.invoke("orders", "steady", count=20)
    assert all(r.ok for r in steady), steady
    assert first.received() == before + 20
