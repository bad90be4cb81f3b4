"""Loopback ports for the processes the benchmarks and the tests start.

They come from outside the kernel's ephemeral range. A port taken with bind(0)
and released could otherwise be handed again by the kernel to a sidecar that
binds 0 itself (its internal gRPC port by default) before the process it was
meant for binds it: that process then fails to start, or a client talks to the
wrong server. Chosen at random, so that runs side by side rarely meet, and never
handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_range() -> tuple[int, int]:
    """Up to 16,000 ports outside the kernel's ephemeral range: [start, stop)."""
    low, high = _ephemeral_range()
    below, above = (max(1024, low - 16000), low), (high + 1, min(65536, high + 1 + 16000))
    return max(below, above, key=lambda span: span[1] - span[0])


_PORT_START, _PORT_STOP = _port_range()
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before by this process."""
    if _PORT_STOP - _PORT_START < 1000:  # the ephemeral range takes nearly every port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(1000):
        port = random.randrange(_PORT_START, _PORT_STOP)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_START}-{_PORT_STOP - 1}")
