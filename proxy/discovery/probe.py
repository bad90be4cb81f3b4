"""Checking an ejected instance without spending a real call on it: a TCP connect.

A connect that completes within the timeout means the peer's internal port accepts
connections again (its process is up and the path to it works); the connection is
closed at once without a byte sent, which a gRPC server treats as a client that left.
"""

from __future__ import annotations

import asyncio
import contextlib

from proxy.discovery.registry import Endpoint

DEFAULT_PROBE_TIMEOUT = 2.0


async def tcp_probe(endpoint: Endpoint, timeout: float = DEFAULT_PROBE_TIMEOUT) -> bool:
    """Whether ``endpoint`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class TcpProber:
    """``tcp_probe`` with a fixed timeout, as the resolver's ``probe``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def __call__(self, endpoint: Endpoint) -> bool:
        return await tcp_probe(endpoint, self.timeout)
