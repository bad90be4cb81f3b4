"""DnsSource and the BalancedResolver over a real dnsmasq on 127.0.0.1: SRV first with
A/AAAA fallback, every address an instance, NXDOMAIN failing at once, the stale answer
kept while the server is stopped, and records changed by SIGHUP picked up after the TTL.

Each test starts its own dnsmasq through tests/e2e/dnsmasq.py and stops it on exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.discovery.answer_cache import CachePolicy
from proxy.discovery.balanced_resolver import BalancedResolver
from proxy.discovery.dns_lookup import DnsLookup
from proxy.discovery.dns_names import KUBERNETES_TEMPLATE, kubernetes_name, srv_name
from proxy.discovery.dns_source import DnsSource
from proxy.discovery.registry import Endpoint
from proxy.discovery.resolver import AppNotFoundError
from proxy.discovery.source import AppNotFound, SourceUnavailable
from tests.e2e.dnsmasq import Dnsmasq, Srv, dnsmasq_path

pytestmark = pytest.mark.skipif(
    dnsmasq_path() is None, reason="needs Debian's dnsmasq package (.ci/run installs it)"
)

BOUND = 10.0  # upper bound for waits; never asserted as a duration
ORDERS = kubernetes_name("orders", "ns")
K8S = KUBERNETES_TEMPLATE.replace("{clusterDomain}", "cluster.local")
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, BOUND * 3))


async def never(endpoint: Endpoint) -> bool:
    return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Dnsmasq]:
    with Dnsmasq(
        tmp_path / "dns",
        ttl=1,
        zones=("cluster.local", "test"),
        hosts={
            ORDERS: ["198.18.0.11", "198.18.0.12", "2001:db8::11"],
            "billing.prod.test": ["198.18.0.31"],
            "a.test": ["198.18.0.21"],
            "b.test": ["198.18.0.22"],
        },
        srv=[
            Srv(srv_name("orders.ns.test"), "a.test", 50010, priority=0, weight=10),
            Srv(srv_name("orders.ns.test"), "b.test", 50011, priority=0, weight=20),
            Srv(srv_name("orders.ns.test"), "c.test", 50012, priority=1),
        ],
    ) as started:
        yield started


def lookup(server: Dnsmasq) -> DnsLookup:
    return DnsLookup.with_nameservers([server.nameserver], lifetime=1.0, attempt_timeout=0.5)


def test_every_address_is_an_instance_on_the_callers_port(server: Dnsmasq) -> None:
    source = DnsSource(lookup(server), K8S, 50002, srv=False)
    found = run(source.lookup("orders", "ns"))
    assert set(found.endpoints) == {
        Endpoint("198.18.0.11", 50002),
        Endpoint("198.18.0.12", 50002),
        Endpoint("2001:db8::11", 50002),
    }
    assert found.ttl == 1.0


def test_srv_records_give_host_and_port_per_instance(server: Dnsmasq) -> None:
    source = DnsSource(lookup(server), "{appid}.{namespace}.test", 50002, srv=True)
    found = run(source.lookup("orders", "ns"))
    # c.test (priority 1) is a fallback and has no address anyway.
    assert set(found.endpoints) == {
        Endpoint("198.18.0.21", 50010),
        Endpoint("198.18.0.22", 50011),
    }


def test_without_srv_records_the_dns_source_falls_back_to_addresses(server: Dnsmasq) -> None:
    source = DnsSource(lookup(server), "{appid}.{namespace}.test", 50002, srv=True)
    found = run(source.lookup("billing", "prod"))
    assert list(found.endpoints) == [Endpoint("198.18.0.31", 50002)]


def test_nxdomain_is_app_not_found(server: Dnsmasq) -> None:
    source = DnsSource(lookup(server), "{appid}.{namespace}.test", 50002, srv=True)
    with pytest.raises(AppNotFound, match="NXDOMAIN"):
        run(source.lookup("missing", "ns"))


def test_a_stopped_server_is_unavailable(server: Dnsmasq) -> None:
    source = DnsSource(lookup(server), K8S, 50002, srv=False)
    server.stop()
    with pytest.raises(SourceUnavailable):
        run(source.lookup("orders", "ns"))


def test_resolver_keeps_answers_while_dns_is_down_and_follows_changes(server: Dnsmasq) -> None:
    source = DnsSource(lookup(server), K8S, 50002, srv=False)
    resolver = BalancedResolver(
        source, clock=time.monotonic, probe=never, cache=CachePolicy(stale_window=60)
    )

    async def spread() -> set[Endpoint]:
        return {await resolver.resolve("orders", "ns") for _ in range(60)}

    async def scenario() -> None:
        assert len(await spread()) == 3
        with pytest.raises(AppNotFoundError, match="NXDOMAIN"):
            await resolver.resolve("orders", "missing")
        server.set_hosts({ORDERS: ["198.18.0.12", "198.18.0.13"]})
        wanted = {Endpoint("198.18.0.12", 50002), Endpoint("198.18.0.13", 50002)}
        deadline = time.monotonic() + BOUND
        while await spread() != wanted:
            assert time.monotonic() < deadline, "the new records were never used"
            await asyncio.sleep(0.2)
        server.stop()
        await asyncio.sleep(1.5)  # past the 1 s TTL: refreshes now fail
        for _ in range(5):
            assert await spread() == wanted
            await asyncio.sleep(0.3)
        await resolver.close()

    run(scenario())
