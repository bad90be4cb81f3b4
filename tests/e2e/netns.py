"""Separate "machines" for tests: Linux network namespaces on one switch.

A ``Network`` owns a switch namespace holding a bridge; each ``Machine`` is a namespace
with ``lo`` up and an ``eth0`` whose other end is a port of that bridge. Links between
machines use only the benchmarking range 198.18.0.0/15; inside a machine, loopback.
Nothing is added to the host's own namespace: the only host-side traces are the namespace
names in /run/netns and the /etc/netns/<name>/ directories (``resolv.conf`` per machine),
and ``close`` removes all of them, also after a failure.

``cut`` sets the machine's bridge port down: its packets are dropped silently on the
switch, the way a pulled cable or a dead host looks to the others (its own eth0 stays up,
so nothing on the machine notices). ``restore`` brings the port back.

Needs root and iproute2's ``ip``; ``unavailable_reason`` says why not, for pytest.skip.
Names carry the creating process id and a random tag, so parallel runs never collide and
``sweep_stale`` can remove what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
DEFAULT_SUBNET = ipaddress.IPv4Network("198.18.0.0/24")
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
PREFIX = "tt-"  # every namespace this kit makes starts with it
_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
_OURS = re.compile(rf"{PREFIX}(\d+)-[0-9a-f]{{6}}-[a-z0-9]+")
BRIDGE = "br0"
MACHINE_DEVICE = "eth0"
STOP_TIMEOUT = 5.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; a failure raises with ip's own message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


@cache
def unavailable_reason() -> str | None:
    """Why network-namespace tests cannot run here, or None (checked once, by a real try)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip command"
    probe = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def our_namespaces() -> list[str]:
    """Every namespace name this kit made that still exists (any run)."""
    listed = ip("netns", "list", check=False).stdout.splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    return [name for name in names if _OURS.fullmatch(name)]


def sweep_stale() -> list[str]:
    """Remove namespaces (and their /etc/netns dirs) left by runs whose process is gone."""
    swept = []
    for name in our_namespaces():
        match = _OURS.fullmatch(name)
        assert match is not None
        if not Path(f"/proc/{match.group(1)}").exists():
            _remove_namespace(name)
            swept.append(name)
    return swept


def _remove_namespace(name: str) -> list[str]:
    """Kill what still runs inside (only our kit's processes live there), delete it."""
    problems = []
    for pid_text in ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_text), signal.SIGKILL)
    deleted = ip("netns", "del", name, check=False)
    if deleted.returncode != 0 and (NETNS_RUN / name).exists():
        problems.append(f"ip netns del {name}: {deleted.stderr.strip()}")
    etc = NETNS_ETC / name
    if etc.exists():
        shutil.rmtree(etc, ignore_errors=True)
        if etc.exists():
            problems.append(f"could not remove {etc}")
    return problems


@dataclass
class Machine:
    """One namespace: ``address`` on ``eth0`` towards the switch, loopback inside."""

    network: Network
    name: str
    netns: str
    address: str
    port: str  # its bridge port's name, inside the switch namespace
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a process inside; ``ip netns exec`` execs it, so the handle's pid is the
        process itself (signals reach it). Stopped by ``Network.close`` if still running."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        process: subprocess.Popen[bytes] = subprocess.Popen([*self.exec_prefix, *argv], **kwargs)
        self.processes.append(process)
        return process

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside to completion; a failure (with ``check``) shows its output."""
        result = subprocess.run(
            [*self.exec_prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(argv)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def launcher(self, argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        """``dnsmasq.Launcher``: run a server inside this machine, output to ``log``."""
        return self.popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def set_resolv_conf(self, nameservers: Sequence[str], search: Sequence[str] = ()) -> Path:
        """What the machine's programs see as /etc/resolv.conf (``ip netns exec`` mounts it).

        Rewritten in place, so processes already running inside see the change too."""
        lines = [f"nameserver {server}" for server in nameservers]
        if search:
            lines.append("search " + " ".join(search))
        path = NETNS_ETC / self.netns / "resolv.conf"
        with open(path, "w") as handle:  # same inode: a bind mount of it keeps working
            handle.write("\n".join(lines) + "\n")
        return path


class Network:
    """Machines on one bridge; a context manager that removes everything on exit."""

    def __init__(self, subnet: str = str(DEFAULT_SUBNET)) -> None:
        require_netns()
        self.subnet = ipaddress.IPv4Network(subnet)
        if not self.subnet.subnet_of(BENCHMARK_RANGE):
            raise ValueError(f"{subnet} is not inside {BENCHMARK_RANGE}")
        self._hosts = self.subnet.hosts()
        self.tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.switch = f"{self.tag}-sw"
        self.machines: dict[str, Machine] = {}
        self._namespaces: list[str] = []
        self._closed = False
        try:
            self._add_namespace(self.switch)
            ip("-n", self.switch, "link", "add", BRIDGE, "type", "bridge",
               "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")  # fmt: skip
            ip("-n", self.switch, "link", "set", BRIDGE, "up")
        except BaseException:
            self.close()
            raise

    def machine(self, name: str, nameservers: Sequence[str] = ("127.0.0.1",)) -> Machine:
        """Add a machine (``name``: a-z0-9, up to 12) with the next address of the subnet.

        Its resolv.conf names ``nameservers``: by default its own loopback, so nothing
        leaks to the host's DNS (which it could not reach anyway)."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"machine name {name!r}: use a-z and 0-9, at most 12, letter first")
        if name in self.machines:
            raise ValueError(f"machine {name!r} exists")
        address = str(next(self._hosts))
        netns = f"{self.tag}-{name}"
        port = f"p{len(self.machines)}"
        self._add_namespace(netns)
        # Created inside the switch namespace, one end moved straight into the machine:
        # no interface ever exists in the host's namespace.
        ip("-n", self.switch, "link", "add", port, "type", "veth",
           "peer", "name", MACHINE_DEVICE, "netns", netns)  # fmt: skip
        ip("-n", self.switch, "link", "set", port, "master", BRIDGE, "up")
        ip("-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", MACHINE_DEVICE)
        ip("-n", netns, "link", "set", MACHINE_DEVICE, "up")
        # Multicast (mDNS) leaves through eth0: there is no default route.
        ip("-n", netns, "route", "add", "224.0.0.0/4", "dev", MACHINE_DEVICE)
        machine = Machine(self, name, netns, address, port)
        machine.set_resolv_conf(nameservers)
        self.machines[name] = machine
        return machine

    def cut(self, machine: Machine) -> None:
        """Unplug the machine: the switch drops everything to and from it, silently."""
        ip("-n", self.switch, "link", "set", machine.port, "down")

    def restore(self, machine: Machine) -> None:
        ip("-n", self.switch, "link", "set", machine.port, "up")

    def _add_namespace(self, name: str) -> None:
        self._namespaces.append(name)  # before creating: close() must try to remove it
        (NETNS_ETC / name).mkdir(parents=True, exist_ok=True)
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")

    def close(self) -> None:
        """Stop every process started inside, delete every namespace (their veth ends and
        the bridge go with them) and every /etc/netns dir. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for machine in self.machines.values():
            for process in machine.processes:
                _stop(process)
        for name in reversed(self._namespaces):
            problems += _remove_namespace(name)
        if problems:
            raise RuntimeError("network namespaces not cleaned up: " + "; ".join(problems))

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def network_fixture() -> Iterator[Network]:
    """Body of a pytest fixture: ``yield from network_fixture()`` (skips where unavailable)."""
    require_netns()
    sweep_stale()
    with Network() as network:
        yield network
