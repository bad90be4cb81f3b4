"""Where a proxy's CPU goes by native library, read with Linux ``perf``.

py-spy sees Python frames; ``perf`` sees every CPU cycle, so it splits a process's
time between the CPython interpreter running Python code, the kernel (system calls,
TCP), protobuf's C code, libc (malloc, memcpy), uvloop, TLS and llhttp. The benchmark
(``--perf``) records each proxy of the tether and floor pairs for exactly the
saturation scenario's measured window and prints the split per process.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# perf report --sort dso: "    64.43%  libpython3.11.so.1.0"
_DSO_LINE = re.compile(r"^\s*(?P<share>\d+(?:\.\d+)?)%\s+(?P<dso>\S.*?)\s*$")

# What each shared object is, by the first pattern its name contains; the order of
# the groups is the order they are printed in.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CPython interpreter (libpython: bytecode, objects, calls)", ("libpython", "python3")),
    ("kernel (system calls, TCP, scheduling)", ("[kernel", "[vdso]")),
    ("protobuf (upb)", ("_message",)),
    ("libc (malloc, memcpy)", ("libc.so", "libm.so")),
    ("uvloop and asyncio in C", ("loop.cpython", "_asyncio")),
    ("TLS (OpenSSL, _ssl)", ("libssl", "libcrypto", "_ssl.")),
    ("llhttp (httptools)", ("parser.cpython",)),
)
OTHER = "other"


def parse_dso_report(text: str) -> dict[str, float]:
    """Percent of samples per shared object from ``perf report --sort dso --stdio``."""
    shares: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _DSO_LINE.match(line)
        if match is not None:
            dso = match["dso"]
            shares[dso] = shares.get(dso, 0.0) + float(match["share"])
    return shares


def group_of(dso: str) -> str:
    for group, patterns in GROUPS:
        if any(pattern in dso for pattern in patterns):
            return group
    return OTHER


def grouped(shares: dict[str, float]) -> list[tuple[str, float]]:
    """Shares summed per group, in GROUPS order, ``other`` last (groups with none left out)."""
    sums: dict[str, float] = {}
    for dso, share in shares.items():
        group = group_of(dso)
        sums[group] = sums.get(group, 0.0) + share
    order = [group for group, _ in GROUPS] + [OTHER]
    return [(group, sums[group]) for group in order if group in sums]


def split_lines(name: str, shares: dict[str, float]) -> list[str]:
    if not shares:
        return [f"  {name}: perf recorded no samples"]
    lines = [f"  {name}:"]
    lines += [f"    {share:5.1f}%  {group}" for group, share in grouped(shares)]
    return lines


@dataclass
class PerfRecording:
    """``perf record`` attached to some processes for one measured window."""

    perf: str
    directory: Path
    targets: dict[str, list[int]]  # process name -> its pids
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def begin(self) -> None:
        for name, pids in self.targets.items():
            argv = [self.perf, "record", "-F", "999", "-q", "-o", str(self.data(name)),
                    "-p", ",".join(map(str, pids))]  # fmt: skip
            self.running[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def end(self) -> None:
        for popen in self.running.values():
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)  # perf writes its file and exits
        for popen in self.running.values():
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()

    def data(self, name: str) -> Path:
        return self.directory / f"perf-{name}.data"

    def report_lines(self) -> list[str]:
        lines: list[str] = []
        for name in self.targets:
            done = subprocess.run(
                [self.perf, "report", "-i", str(self.data(name)), "--sort", "dso",
                 "--stdio", "-g", "none"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            lines += split_lines(name, parse_dso_report(done.stdout))
        return lines


def find_perf() -> str | None:
    return shutil.which("perf")
