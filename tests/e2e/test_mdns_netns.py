"""mDNS name resolution between network namespaces on one bridge (multicast passes the
bridge; each machine routes 224.0.0.0/4 out of eth0): MdnsSource registers in one
machine and is found from another; a goodbye or a SIGKILL makes it disappear within a
bounded time; two instances are both found; the packets are the ones daprd sends and
reads, and a daprd-style responder is found too.

Needs root and ``ip`` (skipped with the reason elsewhere)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.discovery.mdns import RECORD_TTL
from tests.e2e.netns import Machine, Network, network_fixture

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.getenv("PYTHONPATH")])),
}
INTERNAL_PORT = 50002
# The host name is shared by every namespace (ip netns does not separate UTS).
HOSTNAME = socket.gethostname()
T = TypeVar("T")


@pytest.fixture
def network() -> Iterator[Network]:
    yield from network_fixture()


def read_json(process: subprocess.Popen[bytes], timeout: float = 10.0) -> dict[str, Any]:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    if not readable:
        raise AssertionError(f"no output from {process.args} within {timeout}s")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"{process.args} exited ({process.poll()}) without output")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


class Agent:
    """tests/e2e/apps/mdns_agent.py inside a machine: registers an app, answers lookups."""

    def __init__(self, machine: Machine, app_id: str) -> None:
        self.machine = machine
        self.process = machine.popen(
            [sys.executable, str(APPS / "mdns_agent.py"), app_id, machine.address,
             str(INTERNAL_PORT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV,
        )  # fmt: skip
        self.ready = read_json(self.process)
        assert self.ready.get("ready"), self.ready

    def lookup(self, app_id: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"lookup {app_id}\n".encode())
        self.process.stdin.flush()
        return read_json(self.process)

    def stop(self) -> dict[str, Any]:
        """SIGTERM: the agent sends its goodbyes, then reports."""
        self.process.send_signal(signal.SIGTERM)
        closed = read_json(self.process)
        self.process.wait(timeout=10)
        return closed


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def endpoints_of(agent: Agent, app_id: str) -> Callable[[], list[str] | None]:
    def check() -> list[str] | None:
        answer = agent.lookup(app_id)
        return sorted(answer["endpoints"]) if "endpoints" in answer else None

    return check


def gone(agent: Agent, app_id: str) -> Callable[[], str | None]:
    def check() -> str | None:
        answer = agent.lookup(app_id)
        return answer["error"] if answer.get("error") == "AppNotFound" else None

    return check


def test_found_across_machines_and_gone_after_goodbye(network: Network) -> None:
    a, b = network.machine("a"), network.machine("b")
    orders = Agent(a, "orders")
    caller = Agent(b, "caller")
    expected = [f"{a.address}:{INTERNAL_PORT}"]
    assert wait_until(endpoints_of(caller, "orders"), 10, "orders found from b") == expected
    # And the other way round, and an app nobody registered.
    assert wait_until(endpoints_of(orders, "caller"), 10, "caller found from a") == [
        f"{b.address}:{INTERNAL_PORT}"
    ]
    assert caller.lookup("nobody")["error"] == "AppNotFound"

    assert orders.stop() == {"closed": True}
    # The goodbye removes it at once; bounded generously for a slow machine.
    started = time.monotonic()
    wait_until(gone(caller, "orders"), 5, "orders gone after its goodbye")
    print(f"gone {time.monotonic() - started:.1f}s after the goodbye was sent")
    assert caller.lookup("orders")["error"] == "AppNotFound"


def test_sigkilled_instance_is_gone_within_its_ttl(network: Network) -> None:
    a, b = network.machine("a"), network.machine("b")
    orders = Agent(a, "orders")
    caller = Agent(b, "caller")
    wait_until(endpoints_of(caller, "orders"), 10, "orders found from b")
    orders.process.kill()  # no goodbye
    orders.process.wait(timeout=10)
    started = time.monotonic()
    wait_until(gone(caller, "orders"), RECORD_TTL + 10, "orders gone after its TTL")
    print(f"gone {time.monotonic() - started:.1f}s after SIGKILL (record TTL {RECORD_TTL}s)")


def test_two_instances_are_both_found(network: Network) -> None:
    first, second, b = network.machine("a1"), network.machine("a2"), network.machine("b")
    Agent(first, "orders")
    Agent(second, "orders")
    caller = Agent(b, "caller")
    expected = sorted(f"{m.address}:{INTERNAL_PORT}" for m in (first, second))

    def both() -> list[str] | None:
        found = endpoints_of(caller, "orders")()
        return found if found == expected else None

    assert wait_until(both, 15, "both orders instances found") == expected


def grandcat_entries(packet: dict[str, Any], service: str) -> dict[str, dict[str, Any]]:
    """What grandcat/zeroconf's client (daprd) makes of one packet: entries keyed by
    instance name from PTR/SRV/TXT records whose names match exactly (case included),
    addresses joined by SRV target within the same packet."""
    entries: dict[str, dict[str, Any]] = {}
    for name, rtype, ttl, _flush, *rdata in packet["records"]:
        if rtype == "PTR" and name == service:
            entries.setdefault(rdata[0], {"ipv4": []})["ttl"] = ttl
        elif rtype in ("SRV", "TXT") and name.endswith(service):
            entry = entries.setdefault(name, {"ipv4": []})
            entry["ttl"] = ttl
            if rtype == "SRV":
                entry["port"], entry["host"] = rdata[2], rdata[3]
            else:
                entry["text"] = rdata[0]
    for name, rtype, _ttl, _flush, *rdata in packet["records"]:
        if rtype == "A":
            for entry in entries.values():
                if entry.get("host") == name:
                    entry["ipv4"].append(rdata[0])
    return entries


def test_packets_are_what_daprd_sends_and_reads(network: Network) -> None:
    a, b = network.machine("a"), network.machine("b")
    capture = b.popen(
        [sys.executable, str(APPS / "mdns_capture.py"), "20", "orders", "0.5"],
        stdout=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    assert read_json(capture) == {"listening": True}
    orders = Agent(a, "orders")
    instance = f"{HOSTNAME}:{orders.process.pid}.orders.local."
    assert orders.ready["instance"] == instance

    def answered() -> dict[str, Any] | None:
        """An answer to the capture's (daprd's) query, not an announcement: the PTR
        alone in the answer section, SRV, TXT and A among the additionals."""
        packet = read_json(capture)
        if not packet.get("response") or packet["sections"][:2] != [1, 0]:
            return None
        entries = grandcat_entries(packet, "orders.local.")
        live = entries.get(instance, {})
        return live if live.get("ttl") and live.get("ipv4") and "text" in live else None

    entry = wait_until(answered, 10, "a response daprd accepts")
    assert entry["port"] == INTERNAL_PORT
    assert entry["text"] == ["orders"]  # daprd requires the app ID as the TXT
    assert entry["ipv4"] == [a.address]
    assert entry["host"] == orders.ready["server"]

    orders.stop()

    def goodbye() -> dict[str, Any] | None:
        packet = read_json(capture)
        entries = grandcat_entries(packet, "orders.local.")
        said = entries.get(instance)
        return said if said is not None and said.get("ttl") == 0 else None

    # grandcat drops an entry whose TTL is 0.
    wait_until(goodbye, 10, "a goodbye daprd honours")
    capture.kill()


@pytest.mark.parametrize("announces", [True, False], ids=["announced", "asked"])
def test_a_daprd_style_registration_is_found_and_its_goodbye_honoured(
    network: Network, announces: bool
) -> None:
    """``asked``: the responder never announces, so only tether's query, answered as
    grandcat answers it (exact name, no authority section), can find it."""
    a, b = network.machine("a"), network.machine("b")
    fake = a.popen(
        [sys.executable, str(APPS / "mdns_fake_daprd.py"), "orders", a.address,
         str(INTERNAL_PORT), "daprhost", *([] if announces else ["quiet"])],
        stdout=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    assert read_json(fake)["instance"] == f"daprhost:{fake.pid}.orders.local."
    caller = Agent(b, "caller")
    expected = [f"{a.address}:{INTERNAL_PORT}"]
    assert wait_until(endpoints_of(caller, "orders"), 10, "daprd's orders found") == expected
    fake.send_signal(signal.SIGTERM)
    closed = read_json(fake)
    assert closed["closed"] is True
    if not announces:
        assert closed["answered"] >= 1
    wait_until(gone(caller, "orders"), 5, "daprd's orders gone after its goodbye")
