"""Instances that fail, across machines: a crashed one (SIGKILL) and a silent one (its
link cut on the switch). Both stay listed where the caller looks (the registry row or
the DNS records), so only the caller's own detection can take them out of rotation.
Run with each resolver: the balancing and ejection are shared by every source.

Needs root and ``ip``, and dnsmasq for ``dns`` (skipped with the reason elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.dnsmasq import require_dnsmasq
from tests.e2e.harness import wait_until
from tests.e2e.mesh import Mesh, Node, deploy, mesh_fixture
from tests.e2e.mesh_agent import Result

# A generous bound on waiting for something that should take seconds; never asserted
# as a timing, only as "it did happen".
DETECT_TIMEOUT = 60.0
RESOLVER = pytest.mark.parametrize("resolver", ["sqlite", "dns", "mdns"])


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    yield from mesh_fixture(tmp_path)


def failed(results: list[Result]) -> list[tuple[int, str]]:
    return [(r.status, r.body[:200]) for r in results if not r.ok]


def start(mesh: Mesh, resolver: str) -> tuple[Node, Node, Node]:
    """Caller and two instances, each instance already in use."""
    if resolver == "dns":
        require_dnsmasq()
    deployment = deploy(mesh, resolver, 2)
    caller, (first, second) = deployment.caller, deployment.instances
    wait_until(
        lambda: (
            not failed(caller.invoke("orders", "warm", count=10, concurrency=2))
            and first.received() > 0
            and second.received() > 0
        ),
        "both instances receive calls",
    )
    return caller, first, second


@RESOLVER
def test_a_killed_instance_costs_a_handful_of_calls_then_none(mesh: Mesh, resolver: str) -> None:
    caller, first, second = start(mesh, resolver)
    second.kill()  # no goodbye: it stays listed until its row goes stale or DNS changes
    after = caller.invoke("orders", "after", count=30)
    assert len(failed(after)) <= 5, failed(after)
    before = first.received()
    steady = caller.invoke("orders", "steady", count=40, concurrency=4)
    assert not failed(steady), failed(steady)
    assert first.received() == before + 40


@RESOLVER
def test_a_cut_link_is_detected_and_routed_around(mesh: Mesh, resolver: str) -> None:
    caller, first, second = start(mesh, resolver)
    mesh.network.cut(second.machine)  # its packets vanish: no refusal, no reset
    # Calls caught on the silent peer may fail or wait; within a bounded time a whole
    # batch succeeds (the peer is detected and ejected) ...
    wait_until(
        lambda: not failed(caller.invoke("orders", "around", count=10, concurrency=2)),
        "calls are routed around the cut machine",
        DETECT_TIMEOUT,
    )
    # ... and from then on every call does, on the machine still reachable.
    before = first.received()
    steady = caller.invoke("orders", "steady", count=40, concurrency=4)
    assert not failed(steady), failed(steady)
    assert first.received() == before + 40
