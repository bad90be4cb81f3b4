"""The network-namespace kit works: machines reach each other over 198.18.0.0/15, a cut
link goes silent and comes back, a dnsmasq on one machine answers another machine through
that machine's own resolv.conf, and nothing is left behind, also after a failure.

Needs root and ``ip`` (skipped with the reason elsewhere); the DNS case also needs dnsmasq."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.discovery.dns_names import kubernetes_name
from tests.e2e import netns
from tests.e2e.dnsmasq import Dnsmasq, Srv, require_dnsmasq
from tests.e2e.netns import Machine, Network

ROOT = Path(__file__).resolve().parents[2]
# The resolver script imports this checkout's proxy package.
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.getenv("PYTHONPATH")])),
}
PORT = 7070

SERVER = """
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen()
    while True:
        c, _ = s.accept()
        c.sendall(b"hello from " + sys.argv[1].encode())
        c.close()
"""

CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0) as c:
        print(c.recv(100).decode())
except OSError as exc:
    print("failed:", type(exc).__name__, exc)
    sys.exit(3)
"""

# Resolves through the system configuration, i.e. this machine's /etc/netns resolv.conf.
RESOLVE = """
import asyncio, json, sys
from proxy.discovery.dns_lookup import DnsLookup

async def main():
    lookup = DnsLookup.system()
    addresses = await lookup.lookup_addresses(sys.argv[1])
    srv = await lookup.lookup_srv(sys.argv[2])
    print(json.dumps({
        "nameservers": lookup.nameservers,
        "addresses": addresses.addresses,
        "ttl": addresses.ttl,
        "srv": [[t.host, t.port] for t in srv.targets],
    }))

asyncio.run(main())
"""


@pytest.fixture
def network() -> Iterator[Network]:
    yield from netns.network_fixture()


def connect(client: Machine, server: Machine) -> subprocess.CompletedProcess[str]:
    return client.run([sys.executable, "-c", CLIENT, server.address, str(PORT)], check=False)


def eventually(check: Callable[[], bool], attempts: int = 50, pause: float = 0.1) -> bool:
    """True once ``check`` holds, trying a bounded number of times."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(pause)
    return False


def start_server(machine: Machine) -> subprocess.Popen[bytes]:
    return machine.popen([sys.executable, "-c", SERVER, machine.address, str(PORT)])


def test_machines_talk_over_the_benchmarking_range(network: Network) -> None:
    a, b = network.machine("a"), network.machine("b")
    assert a.address == "198.18.0.1"
    assert b.address == "198.18.0.2"
    start_server(a)
    start_server(b)
    assert eventually(lambda: connect(b, a).returncode == 0)
    assert connect(b, a).stdout.strip() == "hello from 198.18.0.1"
    assert eventually(lambda: connect(a, b).returncode == 0)
    assert connect(a, b).stdout.strip() == "hello from 198.18.0.2"
    # Loopback is up inside each machine.
    lo = b.run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout
    assert "127.0.0.1/8" in lo


def test_a_cut_link_goes_silent_and_restore_brings_it_back(network: Network) -> None:
    a, b = network.machine("a"), network.machine("b")
    server = start_server(a)
    assert eventually(lambda: connect(b, a).returncode == 0)

    network.cut(a)
    cut = connect(b, a)
    assert cut.returncode == 3, cut.stdout
    # Silent, not refused: the peer's packets vanish (a timeout or, later, no ARP answer).
    assert "ConnectionRefusedError" not in cut.stdout
    assert server.poll() is None  # the machine itself is untouched

    network.restore(a)
    assert eventually(lambda: connect(b, a).returncode == 0)


def test_dnsmasq_on_one_machine_answers_another_through_its_resolv_conf(
    network: Network, tmp_path: Path
) -> None:
    require_dnsmasq()
    dns, client = network.machine("dns"), network.machine("client")
    orders = kubernetes_name("orders", "ns")
    with Dnsmasq(
        tmp_path / "dns",
        listen=dns.address,
        port=53,
        ttl=9,
        zones=("cluster.local",),
        hosts={orders: ["198.18.0.21", "198.18.0.22"]},
        srv=[Srv(f"_dapr-internal._tcp.{orders}", "pod-1.cluster.local", 50002)],
        launcher=dns.launcher,
    ):
        resolv_conf = client.set_resolv_conf([dns.address])
        assert client.run(["cat", "/etc/resolv.conf"]).stdout == resolv_conf.read_text(), (
            "ip netns exec did not mount the machine's resolv.conf"
        )
        result = client.run(
            [sys.executable, "-c", RESOLVE, orders, f"_dapr-internal._tcp.{orders}"],
            check=False,
            env=ENV,
        )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == {
        "nameservers": ["198.18.0.1:53"],
        "addresses": ["198.18.0.21", "198.18.0.22"],
        "ttl": 9,
        "srv": [["pod-1.cluster.local", 50002]],
    }
    # The host's own resolver configuration is untouched.
    assert Path("/etc/resolv.conf").read_text() != resolv_conf.read_text()


def pids_in(namespace: str) -> list[int]:
    return [int(pid) for pid in netns.ip("netns", "pids", namespace).stdout.split()]


def running(pids: list[int]) -> list[int]:
    """The pids still alive (a zombie waiting for its reaper is not)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


def links_on_host() -> set[str]:
    lines = netns.ip("-o", "link", "show").stdout.splitlines()
    return {line.split(":")[1].strip().split("@")[0] for line in lines}


def test_nothing_is_left_behind_even_after_a_failure() -> None:
    netns.require_netns()
    host_links = links_on_host()
    processes: list[subprocess.Popen[bytes]] = []
    names: list[str] = []
    with pytest.raises(RuntimeError, match="test failed here"), Network() as network:
        a, b = network.machine("a"), network.machine("b")
        names = [network.switch, a.netns, b.netns]
        processes = [a.popen(["sleep", "600"]), b.popen(["sleep", "600"])]
        # A grandchild that no handle knows of: it must go with its namespace.
        a.popen(["sh", "-c", "sleep 600 & wait"])
        assert set(names) <= set(netns.our_namespaces())
        # Wait (bounded) for sh to have started its sleep: three processes in a.
        assert eventually(lambda: len(pids_in(a.netns)) >= 3)
        inside = pids_in(a.netns)
        raise RuntimeError("test failed here")
    assert not set(names) & set(netns.our_namespaces())
    for name in names:
        assert not (netns.NETNS_ETC / name).exists()
        assert not (netns.NETNS_RUN / name).exists()
    assert all(process.poll() is not None for process in processes)
    assert len(inside) >= 3  # sleep, sh and its sleep
    assert running(inside) == []
    assert links_on_host() == host_links


def test_a_killed_run_is_swept_up_by_the_next() -> None:
    netns.require_netns()
    # As if left by a run whose process (pid 0 never is one) died before cleaning up.
    stale = f"{netns.PREFIX}0-abcdef-a"
    (netns.NETNS_ETC / stale).mkdir(parents=True, exist_ok=True)
    netns.ip("netns", "add", stale)
    try:
        netns.sweep_stale()
        assert stale not in netns.our_namespaces()
        assert not (netns.NETNS_ETC / stale).exists()
    finally:
        netns.ip("netns", "del", stale, check=False)


def test_only_the_benchmarking_range_is_used() -> None:
    netns.require_netns()
    with pytest.raises(ValueError, match=r"198\.18\.0\.0/15"):
        Network("10.0.0.0/24")
    with pytest.raises(ValueError, match=r"198\.18\.0\.0/15"):
        Network("198.20.0.0/24")
