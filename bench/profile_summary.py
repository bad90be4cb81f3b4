"""Top frames of a py-spy ``--format raw`` (folded stacks) profile.

``python -m bench.profile_summary profile-orders.folded.txt [--top 15]`` prints, per
function (line numbers merged), its share of all samples as the innermost frame (self)
and anywhere on the stack (inclusive): where a sidecar's CPU goes, in one screen.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (file.py)"; py-spy writes no line when unknown.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


# Innermost Python frames under which only C runs: py-spy (without --native) charges
# that C time to them, so the summary says what it is.
NATIVE_BELOW = {
    "Runner.run (asyncio/runners.py)": "C under the event loop: uvloop, ssl, syscalls",
    "Thread.run (threading.py)": "C in another thread: mostly grpc.aio's poller",
}


# Frames every event-loop (or thread) sample passes through: left out of the inclusive list.
WRAPPERS = (
    "<module> (",
    "main (proxy/cli.py)",
    "_run_event_loop (",
    "run (uvloop/",
    "run.<locals>.wrapper (uvloop/",
    "Runner.run (",
    "Thread._bootstrap",
)


@dataclass(frozen=True)
class Shares:
    samples: int
    self_counts: Counter[str]
    inclusive_counts: Counter[str]


def frame_name(frame: str) -> str:
    """A frame without its line number, and its file without the long prefix."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    if not path.startswith("/"):  # py-spy already wrote it relative to its sys.path entry
        return f"{match['func']} ({path})"
    for marker in ("site-packages/", "/bench/", "/proxy/", "/resiliency/", "/certs/"):
        at = path.find(marker)
        if at >= 0:
            path = path[at + (len(marker) if marker == "site-packages/" else 1) :]
            break
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{match['func']} ({path})"


def parse(lines: Iterable[str]) -> Shares:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):  # recursion counts a sample once
            inclusive[name] += count
    return Shares(total, self_counts, inclusive)


def top_lines(shares: Shares, top: int) -> list[str]:
    if shares.samples == 0:
        return ["  (no samples)"]
    lines = [f"  {shares.samples} samples; top {top} by self share (innermost frame):"]
    for name, count in shares.self_counts.most_common(top):
        note = f"  [{NATIVE_BELOW[name]}]" if name in NATIVE_BELOW else ""
        lines.append(f"    {100.0 * count / shares.samples:5.1f}%  {name}{note}")
    lines.append(
        f"  top {top} by inclusive share (anywhere on the stack, loop and thread wrappers out):"
    )
    inner = Counter(
        {k: v for k, v in shares.inclusive_counts.items() if not k.startswith(WRAPPERS)}
    )
    for name, count in inner.most_common(top):
        lines.append(f"    {100.0 * count / shares.samples:5.1f}%  {name}")
    return lines


def summary_lines(path: Path, top: int = 15) -> list[str]:
    with path.open(errors="replace") as lines:
        return top_lines(parse(lines), top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy --format raw files")
    parser.add_argument("--top", type=int, default=15, help="frames per list (15)")
    args = parser.parse_args(argv)
    for path in args.profiles:
        print(f"{path}:")
        print("\n".join(summary_lines(path, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
