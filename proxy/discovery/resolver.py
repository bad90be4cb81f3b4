"""Name resolution: from an app ID to the internal endpoint of one of its sidecars.

The interface the invoker uses (``Resolver``), its errors, and the SQLite
registration heartbeat. The resolver itself is ``balanced_resolver.BalancedResolver``
over any ``source.InstanceSource``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from proxy.core.errors import TetherError
from proxy.discovery.registry import Endpoint, Registration, RegistryError, SqliteRegistry

log = logging.getLogger("tether.registry")


class ResolveError(TetherError):
    """The app ID has no live instance."""


class AppNotFoundError(ResolveError):
    """The discovery system says the app does not exist: fail at once, never retry."""


class RegistryUnavailable(ResolveError):
    """The discovery system could not be asked, and no earlier answer can stand in."""


class Resolver(Protocol):
    """What the invoker needs: an instance per call, and each call's outcome back."""

    async def resolve(self, app_id: str, namespace: str) -> Endpoint:
        """One instance for the next call; raises ResolveError."""
        ...

    def started(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        """A call to ``endpoint`` (returned by ``resolve``) is being sent."""
        ...

    def finished(
        self, app_id: str, namespace: str, endpoint: Endpoint, latency: float, ok: bool
    ) -> None:
        """That call ended after ``latency`` seconds; ``ok`` is false only for a
        connection-level failure (refused, reset, unreachable, broken transport)."""
        ...

    def evict(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        """A connection to ``endpoint`` failed outside a call: counts for outlier ejection."""
        ...

    async def close(self) -> None: ...


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
        await asyncio.to_thread(self._registry.register, self._registration)
        self._task = asyncio.create_task(self._run(), name="tether-registry-heartbeat")

    async def _run(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._interval)
            beats += 1
            try:
                # In a thread: a registry locked by another process's writer makes
                # SQLite wait out its busy timeout (5 s), which must not stall calls.
                await asyncio.to_thread(self._beat, cleanup=beats % self.CLEANUP_EVERY == 0)
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
            await asyncio.to_thread(self._registry.deregister, self._registration.registration_id)
        except RegistryError as exc:
            # The row goes stale on its own; shutdown must not fail over it.
            log.warning("could not deregister: %s", exc)
