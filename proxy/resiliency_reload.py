"""Loading the Resiliency files under ``--resources-path`` and reloading them
when they change. A reload swaps the engine's snapshot: calls in flight finish
under the old policies, breakers of unchanged policies keep their state, and a
broken edit keeps the last good policies (and says why in the log)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from resiliency import LoadReport, ResiliencyConfig, ResiliencyEngine, load_resiliency

log = logging.getLogger("tether.resiliency")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(paths: tuple[Path, ...]) -> Fingerprint:
    """What changes when a resource file is edited, added or removed."""
    seen: list[tuple[str, int, int]] = []
    for folder in paths:
        for file in [*folder.glob("*.yaml"), *folder.glob("*.yml")]:
            with contextlib.suppress(OSError):  # removed between glob and stat
                stat = file.stat()
                seen.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(seen))


def load(paths: tuple[Path, ...], app_id: str) -> tuple[ResiliencyConfig, LoadReport]:
    config, report = load_resiliency(paths, app_id=app_id)
    for line in report.lines():
        log.error("%s", line)
    for note in report.notes:
        log.debug("%s", note)
    if config.resource_names:
        log.info("resiliency loaded: %s", ", ".join(config.resource_names))
    return config, report


class ResiliencyReloader:
    """Polls the resource folders (no inotify dependency) and applies changes."""

    def __init__(
        self, engine: ResiliencyEngine, paths: tuple[Path, ...], app_id: str, interval: float = 1.0
    ) -> None:
        self._engine = engine
        self._paths = paths
        self._app_id = app_id
        self._interval = interval
        self._seen = fingerprint(paths)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def check(self) -> bool:
        """Reload if anything changed; True when new policies were applied."""
        current = fingerprint(self._paths)
        if current == self._seen:
            return False
        self._seen = current
        config, report = load(self._paths, self._app_id)
        if not report.ok:
            log.error(
                "resiliency: keeping the last good policies until the problems above are fixed"
            )
            return False
        self._engine.reload(config)
        log.info("resiliency reloaded")
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()
