"""The embedded ``sqlite`` resolver across machines: sidecars in separate network
namespaces share one registry file (namespaces share the filesystem) and reach each
other over 198.18.0.0/15 with mTLS. Also proves the mesh kit itself.

Needs root and ``ip`` (skipped with the reason elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh import Mesh, deploy, mesh_fixture, shares


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    yield from mesh_fixture(tmp_path)


def test_two_instances_on_two_machines_share_calls(mesh: Mesh) -> None:
    deployment = deploy(mesh, "sqlite", 2)
    orders = deployment.instances
    # Every sidecar's internal port is bound to its machine's address, not loopback.
    for node in orders:
        assert f"internal gRPC on {node.address}:50002 (mTLS on)" in node.sidecar.log()

    results = deployment.caller.invoke("orders", "share", count=40)
    assert [r.status for r in results] == [200] * 40, results
    # The echo app answers with what it received: the call crossed machines.
    assert results[0].json()["path"] == "/share"
    counts = shares(orders)
    assert sum(counts.values()) == 40
    assert all(count > 0 for count in counts.values()), counts
