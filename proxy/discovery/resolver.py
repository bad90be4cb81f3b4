"""Name resolution: from an app ID to the internal endpoint of one of its sidecars."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.core.errors import TetherError
from proxy.discovery.registry import Endpoint, Registration, RegistryError, SqliteRegistry

log = logging.getLogger("tether.registry")


class ResolveError(TetherError):
    """The app ID has no live instance."""


class RegistryUnavailable(ResolveError):
    """The registry could not be read, so no instance could be found."""


class Resolver(Protocol):
    async def resolve(self, app_id: str, namespace: str) -> Endpoint: ...

    def evict(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        """Forget an endpoint after a connection to it failed."""
        ...

    async def close(self) -> None: ...


class EndpointSource(Protocol):
    """What the resolver needs from a registry (a fake in tests)."""

    def lookup(self, app_id: str, namespace: str) -> list[Endpoint]: ...


@dataclass
class _Entry:
    endpoints: list[Endpoint]
    expires_at: float
    next_index: int = 0


class SqliteResolver:
    """Resolves app IDs through the shared registry, with a short per-key cache.

    ``clock`` is monotonic seconds. The TTL is short because the registry is the
    truth about which sidecars are alive; the cache only spares SQLite on the hot
    path. Unknown app IDs are cached as empty for the same TTL, so a caller
    hammering a missing app does not hammer SQLite either.
    """

    def __init__(
        self, registry: EndpointSource, *, clock: Callable[[], float], ttl: float = 1.0
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[tuple[str, str], _Entry] = {}

    def _entry(self, app_id: str, namespace: str) -> _Entry:
        key = (app_id, namespace)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and now < entry.expires_at:
            return entry
        # A lookup is one indexed query on a local file (well under a
        # millisecond), so it runs on the event loop thread rather than paying
        # for a thread hop on every refresh.
        try:
            endpoints = self._registry.lookup(app_id, namespace)
        except RegistryError as exc:
            raise RegistryUnavailable(
                f"cannot resolve app id {app_id} in namespace {namespace}: {exc}"
            ) from exc
        # Keep the round-robin position across refreshes so load keeps rotating.
        next_index = entry.next_index if entry is not None else 0
        entry = _Entry(endpoints, now + self._ttl, next_index)
        self._cache[key] = entry
        return entry

    def pick(self, app_id: str, namespace: str) -> Endpoint:
        """The synchronous core of :meth:`resolve`."""
        entry = self._entry(app_id, namespace)
        if not entry.endpoints:
            raise ResolveError(f"app id {app_id} not found in namespace {namespace}")
        index = entry.next_index % len(entry.endpoints)
        entry.next_index = index + 1
        return entry.endpoints[index]

    async def resolve(self, app_id: str, namespace: str) -> Endpoint:
        return self.pick(app_id, namespace)

    def evict(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        key = (app_id, namespace)
        entry = self._cache.get(key)
        if entry is None:
            return
        with contextlib.suppress(ValueError):
            entry.endpoints.remove(endpoint)
        if not entry.endpoints:
            # Evicting the last endpoint is not proof the app is gone: ask the
            # registry again rather than answer "not found" until the TTL ends.
            del self._cache[key]

    async def close(self) -> None:
        self._cache.clear()


class RegistryHeartbeat:
    """Keeps this sidecar's own registration alive while it runs."""

    # remove_stale runs every this many heartbeats (a minute at the default interval).
    CLEANUP_EVERY = 12

    def __init__(
        self, registry: SqliteRegistry, registration: Registration, interval: float = 5.0
    ) -> None:
        self._registry = registry
        self._registration = registration
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register now and keep heartbeating; raises RegistryError if the first try fails."""
        self._registry.register(self._registration)
        self._task = asyncio.create_task(self._run(), name="tether-registry-heartbeat")

    async def _run(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._interval)
            beats += 1
            try:
                self._beat(cleanup=beats % self.CLEANUP_EVERY == 0)
            except RegistryError as exc:
                # A busy or briefly unavailable file: the next beat tries again, and
                # callers only drop us once the row is stale.
                log.warning("registry heartbeat failed: %s", exc)

    def _beat(self, *, cleanup: bool) -> None:
        reg = self._registration
        if not self._registry.heartbeat(reg.registration_id):
            # Someone removed our row (cleanup after a long pause, a wiped file).
            log.info("registration of %s vanished from the registry; registering again", reg.app_id)
            self._registry.register(reg)
        if cleanup:
            removed = self._registry.remove_stale()
            if removed:
                log.debug("removed %d stale registrations", removed)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            self._registry.deregister(self._registration.registration_id)
        except RegistryError as exc:
            # The row goes stale on its own; shutdown must not fail over it.
            log.warning("could not deregister: %s", exc)
