"""What every connection of one HTTP server shares: the handler and its hooks, the
limits, the open connections, and the count of requests in flight (for a graceful stop)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from proxy.edge.http_messages import Handler, HttpLimits, Observer, Reject

if TYPE_CHECKING:
    from proxy.edge.http_connection import ServerConnection

log = logging.getLogger("tether.http")


class Site:
    __slots__ = (
        "_idle",
        "_refused",
        "busy",
        "connections",
        "handler",
        "limits",
        "observe",
        "reject",
    )

    def __init__(
        self, handler: Handler, limits: HttpLimits, observe: Observer | None, reject: Reject
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.observe = observe
        self.reject = reject
        self.connections: set[ServerConnection] = set()
        self.busy = 0
        self._refused = 0
        # Made only while a stop waits, so a request costs no event bookkeeping.
        self._idle: asyncio.Event | None = None

    def admit(self, connection: ServerConnection) -> bool:
        """Count a new connection in; at the cap, close an idle one for it (False: none)."""
        if len(self.connections) >= self.limits.max_connections:
            idle = next((c for c in self.connections if c.idle), None)
            if idle is None:
                self._refused += 1
                if self._refused & (self._refused - 1) == 0:  # 1, 2, 4, 8...: the log stays small
                    log.warning(
                        "refused a connection: all %d are busy (%d refused so far)",
                        self.limits.max_connections,
                        self._refused,
                    )
                return False
            idle.close()  # leaves the set when its transport is gone
        self.connections.add(connection)
        return True

    def begin_one(self) -> None:
        self.busy += 1

    def done_one(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        if self.busy:
            self._idle = asyncio.Event()
            try:
                await self._idle.wait()
            finally:
                self._idle = None
