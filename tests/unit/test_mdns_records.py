"""The pure half of mDNS resolution: daprd's wire names, its TXT rule, and cached records
turned into instances (expiry, goodbyes, IPv4 before IPv6)."""

from __future__ import annotations

import pytest

from proxy.discovery.mdns_records import (
    Address,
    InvalidMdnsName,
    Service,
    answer,
    host_target,
    instance_name,
    live_instances,
    pick_address,
    service_name,
    txt_names_app,
    txt_payload,
    txt_strings,
)
from proxy.discovery.registry import Endpoint

NOW = 1000.0
LATER = NOW + 15


def test_names_are_daprds() -> None:
    # grandcat: "<service>.<domain>." with service = the app ID, no _x._tcp labels.
    assert service_name("orders") == "orders.local."
    assert instance_name("build-7", 4242, "orders") == "build-7:4242.orders.local."


def test_long_host_names_are_cut_to_what_python_zeroconf_accepts() -> None:
    from zeroconf import ServiceInfo

    name = instance_name("h" * 60, 4242, "orders")
    assert name == "h" * 51 + ":4242.orders.local."
    ServiceInfo("orders.local.", name)  # accepted (it raises BadTypeInNameException)
    with pytest.raises(InvalidMdnsName, match="too long"):
        instance_name("box", 4242, "x" * 58)


@pytest.mark.parametrize("bad", ["", "a.b", "tab\there", "x" * 64])
def test_app_ids_that_cannot_be_a_label_are_refused(bad: str) -> None:
    with pytest.raises(InvalidMdnsName):
        service_name(bad)


def test_host_target_is_unique_per_address() -> None:
    assert host_target("box.example.com", "198.18.0.1") == "box-198-18-0-1.local."
    assert host_target("box", "2001:db8::1") == "box-2001-db8--1.local."
    assert host_target("box", "198.18.0.1") != host_target("box", "198.18.0.2")
    long_host = "h" * 60
    assert host_target(long_host, "198.18.0.1") == "tether-198-18-0-1.local."


def test_txt_is_one_string_holding_the_app_id() -> None:
    assert txt_payload("orders") == b"\x06orders"
    assert txt_strings(b"\x06orders") == ["orders"]
    assert txt_strings(b"\x06orders\x01x") == ["orders", "x"]
    assert txt_strings(b"") == []
    assert txt_strings(b"\x09short") == []  # truncated string dropped


def test_txt_rule_is_daprds_first_string() -> None:
    assert txt_names_app(["orders"], "orders")
    assert txt_names_app(["orders", "extra"], "orders")
    assert not txt_names_app(["extra", "orders"], "orders")
    assert not txt_names_app([], "orders")
    assert not txt_names_app(["Orders"], "orders")


def test_ipv4_first_ipv6_as_fallback() -> None:
    v4 = Address("198.18.0.9", LATER)
    v4_low = Address("198.18.0.2", LATER)
    v6 = Address("2001:db8::5", LATER)
    link_local = Address("fe80::1", LATER)
    assert pick_address([v6, v4, v4_low], NOW) == v4_low
    assert pick_address([v6, link_local], NOW) == v6
    assert pick_address([link_local], NOW) is None
    assert pick_address([Address("198.18.0.9", NOW)], NOW) is None  # expired
    assert pick_address([Address("not an ip", LATER)], NOW) is None


INSTANCE = "box:1.orders.local."
TARGET = "box-198-18-0-1.local."


def records(
    *,
    srv_expires: float = LATER,
    txt: tuple[str, ...] = ("orders",),
    txt_expires: float = LATER,
    address_expires: float = LATER,
) -> tuple[dict[str, Service], dict[str, tuple[tuple[str, ...], float]], dict[str, list[Address]]]:
    return (
        {INSTANCE: Service(TARGET, 50002, srv_expires)},
        {INSTANCE: (txt, txt_expires)},
        {TARGET: [Address("198.18.0.1", address_expires)]},
    )


def test_a_complete_instance_is_found() -> None:
    services, texts, addresses = records()
    found = live_instances("orders", [INSTANCE], services, texts, addresses, NOW)
    assert [f.endpoint for f in found] == [Endpoint("198.18.0.1", 50002)]
    assert found[0].expires == LATER


def test_names_match_case_insensitively() -> None:
    services, texts, addresses = records()
    services = {INSTANCE: Service(TARGET.upper(), 50002, LATER)}
    found = live_instances("orders", [INSTANCE.upper()], services, texts, addresses, NOW)
    assert len(found) == 1


@pytest.mark.parametrize(
    "broken",
    [
        {"srv_expires": NOW},  # goodbye or TTL ran out
        {"txt_expires": NOW},
        {"address_expires": NOW},
        {"txt": ("payments",)},  # someone else's TXT
        {"txt": ()},
    ],
)
def test_an_instance_missing_a_live_record_is_not_found(broken: dict[str, object]) -> None:
    services, texts, addresses = records(**broken)  # type: ignore[arg-type]
    assert live_instances("orders", [INSTANCE], services, texts, addresses, NOW) == []


def test_an_instance_without_records_is_not_found() -> None:
    assert live_instances("orders", [INSTANCE], {}, {}, {}, NOW) == []


def test_several_instances_are_all_found_and_duplicates_merged() -> None:
    other = "box:2.orders.local."
    third = "other:7.orders.local."
    services = {
        INSTANCE: Service(TARGET, 50002, LATER),
        other: Service(TARGET, 50002, LATER + 5),  # same endpoint, announced twice
        third: Service("other-198-18-0-3.local.", 50002, LATER),
    }
    texts = {name: (("orders",), LATER) for name in services}
    addresses = {
        TARGET: [Address("198.18.0.1", LATER)],
        "other-198-18-0-3.local.": [Address("198.18.0.3", LATER)],
    }
    found = live_instances("orders", [INSTANCE, other, third], services, texts, addresses, NOW)
    assert sorted(f.endpoint.address for f in found) == ["198.18.0.1:50002", "198.18.0.3:50002"]


def test_answer_ttl_is_short_and_never_past_the_first_expiry() -> None:
    services, texts, addresses = records(address_expires=NOW + 0.5)
    found = live_instances("orders", [INSTANCE], services, texts, addresses, NOW)
    assert answer(found, NOW, 2.0).ttl == 0.5
    services, texts, addresses = records()
    found = live_instances("orders", [INSTANCE], services, texts, addresses, NOW)
    result = answer(found, NOW, 2.0)
    assert result.ttl == 2.0
    assert list(result.endpoints) == [Endpoint("198.18.0.1", 50002)]
