"""How many multiplexed calls may be in progress at the callee at once: per connection
and per calling peer. At a limit the Connect handler stops reading frames, so the
caller's HTTP/2 flow-control window fills and its writes wait (backpressure) instead
of each frame becoming a task and an app connection."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass

# Go's HTTP/2 server allows 250 concurrent streams per connection by default; a peer
# (a caller sidecar, however many connections or workers it has) gets a few of those.
DEFAULT_CALLS_PER_CONNECTION = 256
DEFAULT_CALLS_PER_PEER = 1024


@dataclass(frozen=True)
class CallLimits:
    per_connection: int = DEFAULT_CALLS_PER_CONNECTION
    per_peer: int = DEFAULT_CALLS_PER_PEER

    def __post_init__(self) -> None:
        if self.per_connection < 1 or self.per_peer < 1:
            raise ValueError("call limits must be at least 1")


class MuxQuota:
    """Counts calls in progress per connection and per peer; waiters queue in order."""

    def __init__(self, limits: CallLimits) -> None:
        self._limits = limits
        self._counts: dict[Hashable, int] = {}
        self._waiters: dict[Hashable, list[asyncio.Future[None]]] = {}

    def in_progress(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def try_acquire(self, connection: Hashable, peer: Hashable) -> bool:
        """Take a slot at once if both have room (the common case: no await)."""
        counts = self._counts
        if (
            counts.get(connection, 0) >= self._limits.per_connection
            or counts.get(peer, 0) >= self._limits.per_peer
        ):
            return False
        counts[connection] = counts.get(connection, 0) + 1
        counts[peer] = counts.get(peer, 0) + 1
        return True

    async def acquire(self, connection: Hashable, peer: Hashable) -> None:
        """Take a slot, waiting while either is full."""
        while not self.try_acquire(connection, peer):
            connection_full = self.in_progress(connection) >= self._limits.per_connection
            full = connection if connection_full else peer
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(full, []).append(waiter)
            try:
                await waiter
            finally:
                waiting = self._waiters.get(full)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(full, None)

    def release(self, connection: Hashable, peer: Hashable) -> None:
        for key in (connection, peer):
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)  # the table holds only keys in use
            waiting = self._waiters.get(key)
            if waiting:
                first = waiting.pop(0)
                if not first.done():
                    first.set_result(None)
