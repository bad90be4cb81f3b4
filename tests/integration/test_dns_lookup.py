"""dns_lookup against a real dnsmasq on 127.0.0.1 (a free port): SRV, A/AAAA with several
instances, TTLs, NXDOMAIN vs NODATA vs an unreachable server, records changed by SIGHUP.

Each test starts its own dnsmasq through tests/e2e/dnsmasq.py and stops it on exit."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.discovery.dns_lookup import (
    AddressAnswer,
    DnsLookup,
    DnsUnavailable,
    NameNotFound,
    NoRecords,
    ResolverConfigError,
    SrvTarget,
)
from proxy.discovery.dns_names import InvalidDnsName, InvalidNameserver, kubernetes_name, srv_name
from tests.e2e.dnsmasq import Dnsmasq, Srv, Txt, dnsmasq_path, free_dns_port

pytestmark = pytest.mark.skipif(
    dnsmasq_path() is None, reason="needs Debian's dnsmasq package (.ci/run installs it)"
)

# Upper bound for a lookup that must fail fast; never asserted as a duration.
BOUND = 10.0
ORDERS = kubernetes_name("orders", "ns")  # orders-dapr.ns.svc.cluster.local
ZONES = ("cluster.local", "test")
T = TypeVar("T")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Dnsmasq]:
    with Dnsmasq(
        tmp_path / "dns",
        ttl=7,
        zones=ZONES,
        hosts={
            ORDERS: ["198.18.0.11", "198.18.0.12", "198.18.0.13", "2001:db8::11"],
            "a.test": ["198.18.0.21"],
            "b.test": ["198.18.0.22"],
        },
        srv=[
            Srv(srv_name("orders.test"), "a.test", 50002, priority=0, weight=10),
            Srv(srv_name("orders.test"), "b.test", 50003, priority=0, weight=20),
            Srv(srv_name("orders.test"), "c.test", 50004, priority=1, weight=5),
        ],
        txt=[Txt("note.test", ("only text here",))],
    ) as started:
        yield started


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def test_srv_answer_gives_every_instance_with_port_priority_weight_and_ttl(
    server: Dnsmasq,
) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    answer = run(lookup.lookup_srv(srv_name("orders.test")))
    assert answer.targets == (
        SrvTarget("b.test", 50003, 0, 20),
        SrvTarget("a.test", 50002, 0, 10),
        SrvTarget("c.test", 50004, 1, 5),
    )
    assert answer.ttl == 7


def test_a_and_aaaa_give_every_instance_and_the_ttl(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    answer = run(lookup.lookup_addresses(ORDERS))
    assert answer == AddressAnswer(
        ORDERS, ("198.18.0.11", "198.18.0.12", "198.18.0.13", "2001:db8::11"), 7
    )


def test_one_family_missing_is_not_an_error(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    assert run(lookup.lookup_addresses("a.test")).addresses == ("198.18.0.21",)


def test_nxdomain_is_a_definite_negative(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    with pytest.raises(NameNotFound) as caught:
        run(lookup.lookup_addresses(kubernetes_name("payments", "ns")))
    assert caught.value.name == "payments-dapr.ns.svc.cluster.local"
    with pytest.raises(NameNotFound):
        run(lookup.lookup_srv(srv_name("payments.test")))


def test_nodata_is_told_apart_from_nxdomain(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    # The name has A records but no SRV, so a resolver falls back to A/AAAA.
    with pytest.raises(NoRecords) as no_srv:
        run(lookup.lookup_srv("a.test"))
    assert no_srv.value.rdtypes == "SRV"
    # The name exists (TXT) with neither A nor AAAA.
    with pytest.raises(NoRecords) as no_address:
        run(lookup.lookup_addresses("note.test"))
    assert no_address.value.rdtypes == "A or AAAA"


def test_a_refusing_server_is_transient_not_a_negative(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    with pytest.raises(DnsUnavailable, match="REFUSED"):
        run(lookup.lookup_addresses("outside.example"))


def test_stopped_server_is_a_transient_error_within_the_default_lifetime(
    server: Dnsmasq,
) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    assert run(lookup.lookup_addresses("a.test")).addresses == ("198.18.0.21",)
    server.stop()
    # run() bounds the wait at BOUND, well above DEFAULT_LIFETIME: the lookup gives up itself.
    with pytest.raises(DnsUnavailable):
        run(lookup.lookup_srv(srv_name("orders.test")))


def test_silent_server_times_out_within_the_lifetime_as_a_transient_error() -> None:
    # A bound UDP socket that never answers: queries vanish, as with a frozen host.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        lookup = DnsLookup.with_nameservers([f"127.0.0.1:{port}"], lifetime=0.5)
        with pytest.raises(DnsUnavailable, match="in time"):
            # BOUND is far above the lifetime: the lookup must give up on its own.
            run(lookup.lookup_addresses("a.test"))


def test_a_dead_first_nameserver_falls_over_to_the_next(server: Dnsmasq) -> None:
    dead = free_dns_port()
    lookup = DnsLookup.with_nameservers([f"127.0.0.1:{dead}", server.nameserver])
    assert run(lookup.lookup_addresses("b.test")).addresses == ("198.18.0.22",)


def test_a_lookup_waiting_on_a_silent_server_does_not_block_the_event_loop(
    server: Dnsmasq,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        slow = DnsLookup.with_nameservers([f"127.0.0.1:{silent.getsockname()[1]}"], lifetime=5)
        fast = DnsLookup.with_nameservers([server.nameserver])

        async def both() -> tuple[bool, AddressAnswer]:
            stuck = asyncio.create_task(slow.lookup_addresses("a.test"))
            answer = await fast.lookup_addresses("a.test")
            still_waiting = not stuck.done()
            stuck.cancel()
            return still_waiting, answer

        still_waiting, answer = run(both())
    assert still_waiting
    assert answer.addresses == ("198.18.0.21",)


def test_records_changed_with_sighup_are_answered_with_their_ttl(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    before = run(lookup.lookup_addresses(ORDERS))
    assert len(before.addresses) == 4
    # One instance gone, one new: the next lookup sees exactly the new set.
    server.set_hosts({ORDERS: ["198.18.0.12", "198.18.0.13", "198.18.0.14"]})
    after = run(lookup.lookup_addresses(ORDERS))
    assert after.addresses == ("198.18.0.12", "198.18.0.13", "198.18.0.14")
    assert after.ttl == 7
    # Every instance gone: the name no longer exists.
    server.set_hosts({})
    with pytest.raises(NameNotFound):
        run(lookup.lookup_addresses(ORDERS))


def test_srv_records_changed_by_restart_keep_the_same_server_address(server: Dnsmasq) -> None:
    lookup = DnsLookup.with_nameservers([server.nameserver])
    server.restart(srv=[Srv(srv_name("orders.test"), "a.test", 50009)])
    answer = run(lookup.lookup_srv(srv_name("orders.test")))
    assert answer.targets == (SrvTarget("a.test", 50009, 0, 0),)


def test_ttl_follows_the_server_setting(tmp_path: Path) -> None:
    with Dnsmasq(tmp_path, ttl=1, zones=ZONES, hosts={"a.test": ["198.18.0.21"]}) as short:
        lookup = DnsLookup.with_nameservers([short.nameserver])
        assert run(lookup.lookup_addresses("a.test")).ttl == 1


def test_system_configuration_without_nameservers_is_a_config_error(tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("search example.test\n")
    with pytest.raises(ResolverConfigError):
        DnsLookup.system(resolv_conf=resolv_conf)


def test_system_configuration_is_read(tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("nameserver 198.18.0.53\nnameserver 2001:db8::53\noptions timeout:30\n")
    lookup = DnsLookup.system(resolv_conf=resolv_conf)
    assert lookup.nameservers == ("198.18.0.53:53", "[2001:db8::53]:53")


def test_bad_nameservers_are_refused_before_any_query() -> None:
    with pytest.raises(InvalidNameserver) as caught:
        DnsLookup.with_nameservers(["127.0.0.1:53", "dns.example:53", "127.0.0.1:0"])
    assert [p.split(" ")[0] for p in caught.value.problems] == ["[1]", "[2]"]


def test_a_malformed_name_is_refused_before_any_query() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        # A silent server would turn any query into DnsUnavailable: none is sent.
        lookup = DnsLookup.with_nameservers([f"127.0.0.1:{silent.getsockname()[1]}"])
        with pytest.raises(InvalidDnsName, match="empty label"):
            run(lookup.lookup_addresses("orders..test"))
        with pytest.raises(InvalidDnsName, match="longer than 63"):
            run(lookup.lookup_srv("_dapr-internal._tcp." + "o" * 64 + ".test"))
