"""The benchmark's ``--perf`` split: perf's per-library report read and grouped."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.perf_split import OTHER, PerfRecording, group_of, grouped, parse_dso_report

# The shape of `perf report --sort dso --stdio -g none` (taken from a sidecar's run).
REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Total Lost Samples: 0
#
# Samples: 8K of event 'cpu-clock:ppp'
# Event count (approx.): 2000000000
#
# Overhead  Shared Object
# ........  ........................................
#
    64.43%  libpython3.11.so.1.0
    12.11%  [kernel.kallsyms]
     7.70%  _message.abi3.so
     7.36%  libc.so.6
     4.30%  loop.cpython-311-x86_64-linux-gnu.so
     1.35%  parser.cpython-311-x86_64-linux-gnu.so
     1.21%  libcrypto.so.3
     0.46%  _asyncio.cpython-311-x86_64-linux-gnu.so
     0.46%  libssl.so.3
     0.24%  [vdso]
     0.14%  _ssl.cpython-311-x86_64-linux-gnu.so
     0.10%  libm.so.6
     0.04%  libz.so.1
"""


def test_the_report_is_read_per_library() -> None:
    shares = parse_dso_report(REPORT)
    assert shares["libpython3.11.so.1.0"] == 64.43
    assert shares["[kernel.kallsyms]"] == 12.11
    assert len(shares) == 13
    assert parse_dso_report("# only comments\n\n") == {}


def test_libraries_fall_into_groups_in_order() -> None:
    groups = dict(grouped(parse_dso_report(REPORT)))
    names = list(groups)
    assert names[0].startswith("CPython interpreter")
    assert names[-1] == OTHER
    assert groups[names[0]] == 64.43
    assert round(groups["kernel (system calls, TCP, scheduling)"], 2) == 12.35  # with vdso
    assert round(groups["TLS (OpenSSL, _ssl)"], 2) == 1.81
    assert round(groups["uvloop and asyncio in C"], 2) == 4.76
    assert round(groups["libc (malloc, memcpy)"], 2) == 7.46
    assert groups["protobuf (upb)"] == 7.70
    assert groups["llhttp (httptools)"] == 1.35
    assert groups[OTHER] == 0.04
    assert round(sum(groups.values()), 2) == round(sum(parse_dso_report(REPORT).values()), 2)


def test_an_unknown_library_is_other() -> None:
    assert group_of("libsomething.so") == OTHER
    assert group_of("python3.11") != OTHER  # a statically linked interpreter


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
def test_a_real_recording_is_split(tmp_path: Path) -> None:
    """perf attached to a busy Python process for a moment: its samples are mostly
    the interpreter's (or perf may not be allowed here, then it is skipped)."""
    perf = shutil.which("perf")
    assert perf is not None
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"]
    )
    try:
        recording = PerfRecording(perf, tmp_path, {"busy": [busy.pid]})
        recording.begin()
        time.sleep(1.0)  # a second of samples
        recording.end()
        if not recording.data("busy").exists():
            pytest.skip("perf record wrote nothing (not permitted here?)")
        lines = recording.report_lines()
    finally:
        busy.kill()
        busy.wait()
    assert lines[0] == "  busy:"
    assert any("CPython interpreter" in line for line in lines[1:]), lines
