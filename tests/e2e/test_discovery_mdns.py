"""The ``mdns`` resolver between tether sidecars: each sidecar announces its app on
multicast DNS (daprd's format) and finds the others on the machines' bridge, with no
DNS server and no shared file. Wire compatibility with daprd is tested in
``test_mdns_netns.py``; the kill and cut cases in ``test_discovery_failures.py``.

Needs root and ``ip`` (skipped with the reason elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import wait_until
from tests.e2e.mesh import Mesh, deploy, mesh_fixture, shares


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    yield from mesh_fixture(tmp_path)


def test_two_instances_found_by_mdns_share_calls(mesh: Mesh) -> None:
    deployment = deploy(mesh, "mdns", 2)
    caller, orders = deployment.caller, deployment.instances
    # Announcements may still be on their way when the caller starts: wait for both.
    wait_until(
        lambda: (
            all(r.ok for r in caller.invoke("orders", "warm", count=10, concurrency=2))
            and all(node.received() > 0 for node in orders)
        ),
        "both instances are found and called",
    )
    before = shares(orders)
    results = caller.invoke("orders", "share", count=40, concurrency=4)
    assert [r.status for r in results] == [200] * 40, results
    # Least-loaded of two may favour the faster instance for a whole batch, so the split
    # is not asserted; what mDNS must give is both instances, found and in use.
    assert sum(shares(orders, before).values()) == 40
    assert caller.metric("tether_resolution_instances", dst_app_id="orders") == 2


def test_an_unknown_app_fails_with_daprs_error(mesh: Mesh) -> None:
    deployment = deploy(mesh, "mdns", 1)
    results = deployment.caller.invoke("nosuchapp", "x")
    assert results[0].status == 500
    body = results[0].json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "failed to invoke, id: nosuchapp" in body["message"]
