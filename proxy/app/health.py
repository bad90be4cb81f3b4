"""App health checks (``--enable-app-health-check``): the sidecar probes its
app and, while the app is unhealthy, short-circuits calls to it and reports it
on ``/v1.0/healthz``. The state machine is pure; the prober is a thin loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from proxy.app.channel import HttpAppChannel
from proxy.core.body import Body, close_body
from proxy.core.errors import AppChannelError

log = logging.getLogger("tether.apphealth")


@dataclass(frozen=True, slots=True)
class HealthCheckSettings:
    path: str = "/healthz"  # HTTP apps only: a gRPC app is asked AppCallbackHealthCheck
    interval: float = 5.0
    timeout: float = 0.5
    threshold: int = 3


class AppHealthState:
    """Unhealthy until the first successful probe; unhealthy again after
    ``threshold`` failures in a row; healthy again after one success."""

    def __init__(self, threshold: int) -> None:
        self._threshold = max(threshold, 1)
        self._failures = 0
        self.healthy = False

    def record(self, ok: bool) -> bool:
        """Record one probe; True when the state changed."""
        if ok:
            self._failures = 0
            changed = not self.healthy
            self.healthy = True
            return changed
        self._failures += 1
        if self.healthy and self._failures >= self._threshold:
            self.healthy = False
            return True
        return False


class HealthProbe(Protocol):
    """One way to ask the app whether it is healthy."""

    async def health_check(self, timeout: float) -> bool:
        """True when the app answered healthy within ``timeout`` s."""

    async def close(self) -> None: ...


class HttpHealthProbe:
    """A GET of the health path: a 2xx within the timeout is healthy."""

    def __init__(self, channel: HttpAppChannel, path: str) -> None:
        self._channel = channel
        self._path = path

    async def health_check(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                response = await self._channel.call("GET", self._path, [], Body())
                await close_body(response.body)
        except (TimeoutError, AppChannelError):
            return False
        return 200 <= response.status < 300

    async def close(self) -> None:
        await self._channel.close()


class AppHealthProber:
    def __init__(
        self, probe: HealthProbe, settings: HealthCheckSettings, state: AppHealthState
    ) -> None:
        self._probe = probe
        self._settings = settings
        self._state = state
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._probe.close()

    async def probe_once(self) -> bool:
        return await self._probe.health_check(self._settings.timeout)

    async def _run(self) -> None:
        while True:
            ok = await self.probe_once()
            if self._state.record(ok):
                log.info("app is %s", "healthy" if self._state.healthy else "not healthy")
            await asyncio.sleep(self._settings.interval)
