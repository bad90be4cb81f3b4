"""Debian's dnsmasq as a real DNS server for tests, started and stopped by the test.

Records come from two places:
- an addn-hosts file (A and AAAA, several lines per name for several instances) that the
  test rewrites with ``set_hosts``; SIGHUP makes dnsmasq re-read it;
- command-line options (SRV, TXT, CNAME). dnsmasq reads those only at start, so
  ``restart`` changes them (same address and port).

Every answer carries ``ttl`` seconds (``--local-ttl``). Only the given ``zones`` are served:
an unknown name in them is NXDOMAIN, anything outside them REFUSED. A launcher lets the
server run elsewhere, e.g. inside a network namespace (``netns.Machine.popen``).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest

SKIP_REASON = "needs Debian's dnsmasq package (.ci/run installs it)"
READY_TIMEOUT = 10.0


def dnsmasq_path() -> str | None:
    """dnsmasq lives in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("dnsmasq")
    if found:
        return found
    fallback = "/usr/sbin/dnsmasq"
    return fallback if os.access(fallback, os.X_OK) else None


def require_dnsmasq() -> str:
    """The dnsmasq binary, or skip the calling test with the reason."""
    found = dnsmasq_path()
    if found is None:
        pytest.skip(SKIP_REASON)
    return found


def free_dns_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (DNS uses both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


@dataclass(frozen=True)
class Srv:
    """One SRV record: ``name`` -> ``target:port`` (dnsmasq's field order)."""

    name: str
    target: str
    port: int
    priority: int = 0
    weight: int = 0

    def option(self) -> str:
        return f"--srv-host={self.name},{self.target},{self.port},{self.priority},{self.weight}"


@dataclass(frozen=True)
class Txt:
    name: str
    values: tuple[str, ...]

    def option(self) -> str:
        for value in self.values:
            if '"' in value or "\\" in value:
                raise ValueError(f"TXT value {value!r}: quotes and backslashes are not supported")
        return f"--txt-record={self.name}," + ",".join(f'"{v}"' for v in self.values)


# (argv, log file) -> the started process; the default runs it right here.
Launcher = Callable[[list[str], IO[bytes]], "subprocess.Popen[bytes]"]


def _local_launcher(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def hosts_text(hosts: Mapping[str, Sequence[str]]) -> str:
    """addn-hosts lines: one per (address, name), so a name with N addresses has N records."""
    return "".join(
        f"{address} {name}\n" for name, addresses in hosts.items() for address in addresses
    )


class Dnsmasq:
    """One dnsmasq process with its own handle; use as a context manager (stopped on exit)."""

    def __init__(
        self,
        workdir: Path,
        *,
        listen: str = "127.0.0.1",
        port: int | None = None,
        ttl: int = 5,
        zones: Iterable[str] = ("test",),
        hosts: Mapping[str, Sequence[str]] | None = None,
        srv: Sequence[Srv] = (),
        txt: Sequence[Txt] = (),
        cnames: Mapping[str, str] | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.binary = require_dnsmasq()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.listen = listen
        self.port = port if port is not None else free_dns_port(listen)
        self.ttl = ttl
        self.zones = tuple(zones)
        self.srv = tuple(srv)
        self.txt = tuple(txt)
        self.cnames = dict(cnames or {})
        self.hosts_path = workdir / "hosts"
        self.log_path = workdir / "dnsmasq.log"
        self._launcher = launcher or _local_launcher
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.hosts_path.write_text(hosts_text(hosts or {}))

    @property
    def nameserver(self) -> str:
        """``host:port`` as tether's ``nameservers`` list takes it."""
        return f"{self.listen}:{self.port}"

    def argv(self) -> list[str]:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        argv = [
            self.binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",  # not /etc/dnsmasq.conf nor /etc/dnsmasq.d
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--listen-address={self.listen}",
            "--bind-interfaces",
            f"--port={self.port}",
            f"--local-ttl={self.ttl}",
            f"--addn-hosts={self.hosts_path}",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            "--log-facility=-",
            "--log-queries",
            # Keep our identity: the hosts file sits in a private test directory.
            f"--user={user}",
            f"--group={group}",
        ]
        argv += [f"--local=/{zone}/" for zone in self.zones]
        argv += [record.option() for record in self.srv]
        argv += [record.option() for record in self.txt]
        argv += [f"--cname={alias},{target}" for alias, target in self.cnames.items()]
        return argv

    def start(self) -> Dnsmasq:
        if self.process is not None:
            raise RuntimeError("dnsmasq is already running")
        # The log is kept across restarts: wait for one more "started" line than before.
        starts = self.log().count("started, version")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = self._launcher(self.argv(), self._log)
        try:
            self._wait_for_log("started, version", starts + 1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and close its log. Safe to repeat."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(
        self,
        *,
        srv: Sequence[Srv] | None = None,
        txt: Sequence[Txt] | None = None,
        cnames: Mapping[str, str] | None = None,
    ) -> None:
        """Start again on the same address and port with new config-only records."""
        self.stop()
        if srv is not None:
            self.srv = tuple(srv)
        if txt is not None:
            self.txt = tuple(txt)
        if cnames is not None:
            self.cnames = dict(cnames)
        self.start()

    def set_hosts(self, hosts: Mapping[str, Sequence[str]]) -> None:
        """Replace every A/AAAA record and wait until dnsmasq has re-read them (SIGHUP)."""
        process = self._running()
        reads = self.log().count(f"read {self.hosts_path}")
        self.hosts_path.write_text(hosts_text(hosts))
        process.send_signal(signal.SIGHUP)
        self._wait_for_log(f"read {self.hosts_path}", reads + 1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"dnsmasq is not running; its log:\n{self.log()}")
        return self.process

    def _wait_for_log(self, needle: str, count: int) -> None:
        """Wait (bounded) until ``needle`` is in the log ``count`` times: dnsmasq logs
        "started" once its sockets are bound, and "read <file>" after each reload."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.log().count(needle) >= count:
                return
            self._running()
            time.sleep(0.02)
        raise TimeoutError(f"dnsmasq did not log {needle!r} in {READY_TIMEOUT}s:\n{self.log()}")

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
