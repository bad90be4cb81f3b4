"""DNS-based name resolution across machines, with real processes only.

Every "machine" is a network namespace on one bridge (198.18.0.0/15). dnsmasq runs on
its own machine ("dns", port 53) and serves the A and SRV records of the instances;
each instance machine runs the echo app on loopback and a ``tether sidecar`` whose
internal port (50002 everywhere, as under Dapr's injector) is bound to the machine's
address. The caller ("checkout") is a sidecar with no app; the test calls it from
inside its machine and counts what each instance's app received.

Needs root, ``ip`` and dnsmasq (skipped with the reason elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.e2e.dnsmasq import Dnsmasq, Srv, require_dnsmasq
from tests.e2e.harness import wait_until
from tests.e2e.mesh import (
    DOMAIN,
    INTERNAL_PORT,
    Mesh,
    Node,
    deploy,
    dns_name,
    mesh_fixture,
    queries,
    resolution_config,
    shares,
)
from tests.e2e.mesh_agent import Result

# tether's resolution metrics on the caller (dst_app_id, dst_namespace labels).
LOOKUPS = "tether_resolution_lookups_total"
STALE = "tether_resolution_stale_total"
INSTANCES = "tether_resolution_instances"
# A generous bound on waiting for something that should take seconds; never asserted
# as a timing, only as "it did happen".
DETECT_TIMEOUT = 60.0


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    require_dnsmasq()
    yield from mesh_fixture(tmp_path)


def cluster(mesh: Mesh, instances: int, *, ttl: int = 5) -> tuple[Dnsmasq, Node, list[Node]]:
    """dnsmasq, the caller, and ``instances`` instances of orders, all in DNS."""
    deployment = deploy(mesh, "dns", instances, ttl=ttl)
    assert deployment.server is not None
    return deployment.server, deployment.caller, deployment.instances


def dns_config(mesh: Mesh, server: Dnsmasq) -> Path:
    return resolution_config(mesh, "dns", server)


def all_ok(results: Sequence[Result]) -> bool:
    return all(result.ok for result in results)


def statuses(results: Sequence[Result]) -> list[tuple[int, str]]:
    """For failure messages: what went wrong, without the successful bodies."""
    return [(r.status, r.body[:200]) for r in results if not r.ok]


def warm(checkout: Node, nodes: Sequence[Node]) -> None:
    """Call until every instance has received traffic (each is known and connected)."""
    wait_until(
        lambda: (
            all_ok(checkout.invoke("orders", "warm", count=10, concurrency=2))
            and all(node.received() > 0 for node in nodes)
        ),
        "every instance receives calls",
    )


def assert_shared(counts: Mapping[str, int], total: int) -> None:
    assert sum(counts.values()) == total, counts
    # Least-loaded of two random choices under concurrent calls: every instance takes a
    # real share (a quarter of an even split is far below what balancing gives).
    assert all(count >= total / (4 * len(counts)) for count in counts.values()), counts


@pytest.mark.parametrize("instances", [2, 3])
def test_instances_share_calls(mesh: Mesh, instances: int) -> None:
    _, checkout, orders = cluster(mesh, instances)
    total = 30 * instances
    results = checkout.invoke("orders", "share", count=total, concurrency=4)
    assert all_ok(results), statuses(results)
    assert results[0].json()["path"] == "/share"
    assert_shared(shares(orders), total)
    assert checkout.metric(INSTANCES, dst_app_id="orders") == instances


def test_srv_records_give_each_instance_its_host_and_port(mesh: Mesh) -> None:
    # The instances listen on another internal port than the caller's own: only the
    # SRV records' ports can lead there.
    port = INTERNAL_PORT + 1
    machines = [mesh.machine("orders1"), mesh.machine("orders2")]
    name = dns_name("orders")
    server = mesh.dns(
        hosts={f"{m.name}.{DOMAIN}": [m.address] for m in machines},
        srv=[Srv(f"_dapr-internal._tcp.{name}", f"{m.name}.{DOMAIN}", port) for m in machines],
    )
    config = dns_config(mesh, server)
    orders = [mesh.node(m.name, "orders", config=config, internal_port=port) for m in machines]
    checkout = mesh.node("checkout", "checkout", app=False, config=config)
    results = checkout.invoke("orders", count=40, concurrency=4)
    assert all_ok(results), statuses(results)
    assert_shared(shares(orders), 40)
    assert queries(server, name)["SRV"] >= 1


def test_an_instance_added_to_dns_gets_traffic_within_the_ttl(mesh: Mesh) -> None:
    ttl = 2
    server, checkout, (first,) = cluster(mesh, 1, ttl=ttl)
    second = mesh.node("orders2", "orders", config=dns_config(mesh, server))
    results = checkout.invoke("orders", count=20, concurrency=2)
    assert all_ok(results), statuses(results)
    assert second.received() == 0  # running, but not in DNS

    server.set_hosts({dns_name("orders"): [first.address, second.address]})
    # Within a TTL (bounded generously: a slow machine must not fail this).
    wait_until(
        lambda: (
            all_ok(checkout.invoke("orders", "added", count=10, concurrency=2))
            and second.received() > 0
        ),
        "the added instance receives calls",
        timeout=ttl + 15,
    )
    assert checkout.metric(INSTANCES, dst_app_id="orders") == 2

    # Removed from DNS: it stops getting calls within a TTL plus calls in flight.
    server.set_hosts({dns_name("orders"): [second.address]})

    def first_unused() -> bool:
        before = first.received()
        return all_ok(checkout.invoke("orders", "removed", count=10)) and (
            first.received() == before
        )

    wait_until(first_unused, "the removed instance gets no more calls", timeout=ttl + 15)


def test_nxdomain_fails_the_call_at_once(mesh: Mesh) -> None:
    server, checkout, _ = cluster(mesh, 1)
    result = checkout.invoke("nosuchapp")[0]
    assert result.status == 500, result
    body = result.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "nosuchapp" in body["message"]
    # No retries across seconds: the sidecar made one lookup, and each record type was
    # asked for at most twice (a resolver retrying like Dapr's 5 x 100 ms would ask five
    # times or more).
    assert checkout.metric(LOOKUPS, dst_app_id="nosuchapp", result="not_found") == 1
    name = dns_name("nosuchapp")
    asked = wait_until(lambda: queries(server, name), "dnsmasq logs the query")
    assert all(count <= 2 for count in asked.values()), asked
    # A known app is unaffected.
    assert all_ok(checkout.invoke("orders", count=5))


@pytest.mark.parametrize("outage", ["stopped", "cut"])
def test_dns_down_does_not_fail_calls_to_known_apps(mesh: Mesh, outage: str) -> None:
    ttl = 1  # the floor: the cached answer expires many times while DNS is down
    server, checkout, orders = cluster(mesh, 2, ttl=ttl)
    warm(checkout, orders)
    before = shares(orders)
    if outage == "stopped":
        server.stop()
    else:
        mesh.network.cut(mesh.machine("dns"))  # lookups time out: no call may wait on them
    results: list[Result] = []

    def served_stale() -> bool:
        """Call on; true once refreshes have failed and calls got the stale answer."""
        results.extend(checkout.invoke("orders", "stale", count=5, concurrency=2))
        return checkout.metric(STALE, dst_app_id="orders") > 0

    # Bounded far inside the default stale window (5 minutes).
    wait_until(served_stale, "calls are served the last answer", DETECT_TIMEOUT)
    # Then several more expiries of the (1 s) TTL with DNS still down.
    down_since = time.monotonic()
    while time.monotonic() - down_since < 3 * ttl:  # a duration of calling, not an assert
        results += checkout.invoke("orders", "stale", count=5, concurrency=2)
    assert all_ok(results), statuses(results)
    # The whole last answer is kept, not just one instance.
    assert all(count > 0 for count in shares(orders, before).values())
    # The outage was noticed and said so.
    assert checkout.metric(LOOKUPS, dst_app_id="orders", result="unavailable") > 0
    assert "last answer" in checkout.sidecar.log()
    # An app that never resolved cannot be found while DNS is down.
    assert not checkout.invoke("neverseen")[0].ok


def test_app_dot_namespace_resolves_in_that_namespace(mesh: Mesh) -> None:
    server = mesh.dns()
    config = dns_config(mesh, server)
    orders = mesh.node("orders1", "orders", config=config, namespace="prod")
    # Only the prod name exists; the default namespace's name is NXDOMAIN.
    server.set_hosts({dns_name("orders", "prod"): [orders.address]})
    checkout = mesh.node("checkout", "checkout", app=False, config=config)
    results = checkout.invoke("orders.prod", "hello", count=5)
    # With mTLS the callee proved the identity spiffe://public/ns/prod/orders.
    assert all_ok(results), statuses(results)
    assert orders.received() == 5
    wrong = checkout.invoke("orders")[0]
    assert wrong.status == 500, wrong
    assert queries(server, dns_name("orders", "default"))
