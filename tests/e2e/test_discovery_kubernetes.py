"""Dapr's ``kubernetes`` and ``nameformat`` resolvers across machines, through the
system resolver as in a pod: each machine's /etc/netns/<ns>/resolv.conf names the DNS
machine, where dnsmasq serves the headless Service records (one A record per instance).
Every sidecar uses the same internal port (50002), as under Dapr's injector, and the
caller connects to each address on its own internal port.

Needs root, ``ip`` and dnsmasq (skipped with the reason elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.e2e.dnsmasq import Dnsmasq, require_dnsmasq
from tests.e2e.mesh import DOMAIN, Mesh, Node, mesh_fixture, queries, shares
from tests.e2e.mesh_agent import Result


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    require_dnsmasq()
    yield from mesh_fixture(tmp_path)


def failed(results: Sequence[Result]) -> list[tuple[int, str]]:
    return [(r.status, r.body[:200]) for r in results if not r.ok]


def start(
    mesh: Mesh,
    name: str,
    *,
    zone: str,
    config: Path | None,
    extra: Sequence[str] = (),
) -> tuple[Dnsmasq, Node, list[Node]]:
    """dnsmasq serving ``name`` (every instance's address), two orders instances and a
    caller whose machine resolves through dnsmasq via its resolv.conf."""
    server = mesh.dns(zones=(zone,))
    orders = [mesh.node(f"orders{i}", "orders", config=config, extra=extra) for i in (1, 2)]
    server.set_hosts({name: [node.address for node in orders]})
    caller = mesh.node("checkout", "checkout", app=False, config=config, extra=extra, wait=False)
    caller.machine.set_resolv_conf([server.listen])  # port 53: resolv.conf has no ports
    mesh.wait_ready(caller)
    return server, caller, orders


def assert_shared(counts: Mapping[str, int], total: int) -> None:
    assert sum(counts.values()) == total, counts
    assert all(count >= total / (4 * len(counts)) for count in counts.values()), counts


def resolution(mesh: Mesh, component: str, configuration: Mapping[str, object]) -> Path:
    spec = {"nameResolution": {"component": component, "configuration": dict(configuration)}}
    return mesh.config(component, spec)


def test_kubernetes_resolver_finds_the_headless_service(mesh: Mesh) -> None:
    config = resolution(mesh, "kubernetes", {"clusterDomain": DOMAIN})
    headless = f"orders-dapr.default.svc.{DOMAIN}"
    server, caller, orders = start(mesh, headless, zone=DOMAIN, config=config)
    results = caller.invoke("orders", count=40, concurrency=4)
    assert not failed(results), failed(results)
    assert_shared(shares(orders), 40)
    assert queries(server, headless)["A"] >= 1


def test_nameformat_resolver_fills_app_id_and_namespace(mesh: Mesh) -> None:
    config = resolution(mesh, "nameformat", {"format": "svc-{appid}.{namespace}." + DOMAIN})
    name = f"svc-orders.default.{DOMAIN}"
    server, caller, orders = start(mesh, name, zone=DOMAIN, config=config)
    results = caller.invoke("orders", count=40, concurrency=4)
    assert not failed(results), failed(results)
    assert_shared(shares(orders), 40)
    assert queries(server, name)["A"] >= 1


def test_mode_kubernetes_defaults_to_the_kubernetes_resolver(mesh: Mesh) -> None:
    # No Configuration at all: Dapr's default cluster domain.
    headless = "orders-dapr.default.svc.cluster.local"
    server, caller, orders = start(
        mesh, headless, zone="cluster.local", config=None, extra=("--mode", "kubernetes")
    )
    results = caller.invoke("orders", count=20, concurrency=4)
    assert not failed(results), failed(results)
    assert sum(shares(orders).values()) == 20
    assert queries(server, headless)["A"] >= 1
