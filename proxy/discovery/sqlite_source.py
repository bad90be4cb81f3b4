"""The embedded SQLite registry as an ``InstanceSource``.

Lookups run in a worker thread: SQLite answers in well under a millisecond, but a
registry locked by another sidecar's writer could hold the event loop for up to the
busy timeout. ``start`` registers this sidecar and keeps its row alive; ``close``
withdraws it.
"""

from __future__ import annotations

import asyncio

from proxy.discovery.registry import RegistryError, SqliteRegistry
from proxy.discovery.resolver import RegistryHeartbeat
from proxy.discovery.source import AppNotFound, Instances, SourceUnavailable

# The registry is the truth about which sidecars are alive, so answers are trusted for
# one second (the cache's floor): the cache only spares SQLite on the hot path.
SQLITE_TTL = 1.0


class SqliteSource:
    def __init__(self, registry: SqliteRegistry, heartbeat: RegistryHeartbeat | None) -> None:
        self._registry = registry
        self._heartbeat = heartbeat

    async def lookup(self, app_id: str, namespace: str) -> Instances:
        try:
            endpoints = await asyncio.to_thread(self._registry.lookup, app_id, namespace)
        except RegistryError as exc:
            raise SourceUnavailable(str(exc)) from exc
        if not endpoints:
            raise AppNotFound("no live registration in the registry", SQLITE_TTL)
        return Instances(endpoints, SQLITE_TTL)

    async def start(self) -> None:
        """Register this sidecar; raises RegistryError when the registry cannot be written."""
        if self._heartbeat is not None:
            await self._heartbeat.start()

    async def close(self) -> None:
        if self._heartbeat is not None:
            await self._heartbeat.stop()
