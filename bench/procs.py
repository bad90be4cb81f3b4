"""The benchmark's processes: start, wait for, stop, and account CPU and memory from /proc."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    pid: int = 0  # the process whose CPU and memory are measured (py-spy's child if profiled)
    # Further processes charged to the same name: nginx's worker beside its master.
    extra_pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pid:
            self.pid = self.popen.pid

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.extra_pids]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(name: str, argv: Sequence[str], env: dict[str, str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # a Ctrl-C at the terminal reaches only us
        )
    return Proc(name, popen, log)


def stop(proc: Proc) -> None:
    """SIGTERM, wait, SIGKILL. Under py-spy the sidecar itself is signalled first: py-spy
    writes its profile when its program exits, and does not pass SIGTERM on."""
    if proc.popen.poll() is not None:
        return
    profiled = proc.pid != proc.popen.pid
    with contextlib.suppress(ProcessLookupError):
        if profiled:
            os.kill(proc.pid, signal.SIGTERM)
        else:
            proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(STOP_TIMEOUT * (2 if profiled else 1))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if profiled:
                os.kill(proc.pid, signal.SIGKILL)
            proc.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(STOP_TIMEOUT)


def tether_command() -> list[str]:
    """The ``tether`` console script, preferring the one beside this interpreter
    (a pyenv shim would work too, but costs a shell and a second start-up)."""
    beside = Path(sys.executable).parent / "tether"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("tether")
    if found:
        return [found]
    return [sys.executable, "-m", "proxy"]


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (empty if it is gone)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.extend(int(c) for c in (task / "children").read_text().split())
    except OSError:
        return []
    return found


def child_pid(pid: int, deadline: float) -> int:
    """The first child of ``pid`` (the profiled program under py-spy), else ``pid``."""
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return pid
        found = children(pid)
        if found:
            return found[0]
        time.sleep(0.05)
    return pid


def wait_healthy(procs: Sequence[Proc], ports: Sequence[int]) -> str | None:
    """Waits for ``GET /v1.0/healthz`` -> 204 on every port; returns a problem or None."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = dict(zip(ports, procs, strict=True))
    while pending and time.monotonic() < deadline:
        for port, proc in list(pending.items()):
            if not proc.alive():
                return f"{proc.name} exited with {proc.popen.returncode}"
            try:
                url = f"http://127.0.0.1:{port}/v1.0/healthz"
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 204:
                        del pending[port]
            except (urllib.error.URLError, OSError):
                pass
        if pending:
            time.sleep(0.1)
    if pending:
        names = ", ".join(p.name for p in pending.values())
        return f"no 204 from /v1.0/healthz within {STARTUP_TIMEOUT:.0f} s: {names}"
    return None


def wait_listening(port: int, proc: Proc) -> str | None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            return f"{proc.name} exited with {proc.popen.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return None
        time.sleep(0.05)
    return f"{proc.name} is not listening on {port}"


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds (NaN if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 ("state")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB (NaN if unknown)."""
    values = {"VmRSS": math.nan, "VmHWM": math.nan}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return values["VmRSS"], values["VmHWM"]


def proc_cpu(proc: Proc) -> float:
    """CPU seconds of every process charged to ``proc``."""
    return sum(cpu_seconds(pid) for pid in proc.pids)


def proc_memory(proc: Proc) -> tuple[float, float]:
    """(RSS, peak RSS) summed over every process charged to ``proc``: for nginx the
    master and its worker, counting pages they share twice (so never in nginx's favour)."""
    pairs = [memory_mb(pid) for pid in proc.pids]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)
