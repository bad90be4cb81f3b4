"""MdnsSource without sockets: what it announces, what it refuses, which apps it keeps
refreshing (fake clock). The network half is tests/e2e/test_mdns_netns.py."""

from __future__ import annotations

import asyncio

import pytest

from proxy.discovery import mdns
from proxy.discovery.mdns import MdnsSource
from proxy.discovery.source import AppNotFound, InstanceSource


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def source(clock: Clock | None = None) -> MdnsSource:
    return MdnsSource(
        "orders",
        "prod",
        "198.18.0.1",
        50002,
        clock=clock or Clock(),
        hostname="box",
        pid=42,
    )


def test_announces_daprds_names() -> None:
    made = source()
    assert made.service_type == "orders.local."
    assert made.instance == "box:42.orders.local."
    assert made.server == "box-198-18-0-1.local."


def test_is_an_instance_source() -> None:
    made: InstanceSource = source()
    assert made is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("orders", "default", "not-an-ip", 50002), "not an IP address"),
        (("orders", "default", "198.18.0.1", 0), "out of range"),
        (("or.ders", "default", "198.18.0.1", 50002), "contains a dot"),
    ],
)
def test_bad_values_are_refused(args: tuple[str, str, str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MdnsSource(*args)


def test_bad_interfaces_are_refused() -> None:
    with pytest.raises(ValueError, match="interface 'eth0'"):
        MdnsSource("orders", "default", "198.18.0.1", 50002, interfaces=["eth0"])


def test_an_app_id_that_cannot_be_an_mdns_name_is_not_found_without_io() -> None:
    with pytest.raises(AppNotFound, match="cannot be found over mDNS"):
        asyncio.run(source().lookup("a.b", "default"))


def test_refreshes_apps_looked_up_lately_once_per_interval() -> None:
    clock = Clock()
    made = source(clock)
    made._watched["payments"] = clock.now  # as lookup() records it
    assert made.due_for_refresh(clock.now) == ["payments"]
    made._queried["payments"] = clock.now
    clock.now += mdns.REFRESH_INTERVAL - 0.1
    assert made.due_for_refresh(clock.now) == []
    clock.now += 0.1
    assert made.due_for_refresh(clock.now) == ["payments"]
    # Nobody asked for it for the watch window: no more queries for it.
    clock.now += mdns.WATCH_WINDOW
    assert made.due_for_refresh(clock.now) == []
    assert "payments" not in made._watched
