"""Loading the Resiliency files under ``--resources-path`` and reloading them
when they change. A reload swaps the engine's snapshot: calls in flight finish
under the old policies, and breakers of unchanged policies keep their state.
A file whose new version is broken keeps its last good version (the log says
why); the other files' edits still apply, and a file that was broken from the
start is skipped, as at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from resiliency import LoadReport, ResiliencyConfig, ResiliencyEngine, load_texts
from resiliency.loader import resiliency_files
from yamlcheck import Problems, read_text

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


class ResiliencyFiles:
    """The resource files as last loaded, remembering each file's last good text."""

    def __init__(self, paths: tuple[Path, ...], app_id: str) -> None:
        self._paths = paths
        self._app_id = app_id
        self._good: dict[str, str] = {}

    def load(self) -> tuple[ResiliencyConfig, LoadReport]:
        files, _ = resiliency_files(self._paths)
        texts: dict[str, str] = {}
        for file in files:
            unreadable = Problems(str(file))
            text = read_text(file, unreadable)
            if text is None:
                log.error("%s", "\n".join(unreadable.items))
            else:
                texts[str(file)] = text
        config, report = load_texts(texts.items(), self._app_id)
        # A file is kept or replaced whole, whichever of its documents was rejected.
        broken = {location.file for location in report.rejected}
        kept = {name for name in broken if name in self._good and self._good[name] != texts[name]}
        for line in report.lines():
            log.error("%s", line)
        if kept:
            for name in sorted(kept):
                log.error("%s: keeping its last good version until the problems are fixed", name)
                texts[name] = self._good[name]
            config, report = load_texts(texts.items(), self._app_id)
        self._good = {name: text for name, text in texts.items() if name not in broken - kept}
        for note in report.notes:
            log.debug("%s", note)
        return config, report


class ResiliencyReloader:
    """Polls the resource folders (no inotify dependency) and applies changes."""

    def __init__(
        self,
        engine: ResiliencyEngine,
        files: ResiliencyFiles,
        paths: tuple[Path, ...],
        on_loaded: Callable[[ResiliencyConfig], None] | None = None,
        interval: float = 1.0,
    ) -> None:
        self._on_loaded = on_loaded
        self._engine = engine
        self._files = files
        self._paths = paths
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
        """Reload if anything changed; True when a new snapshot was applied."""
        loaded = self._load_if_changed()
        if loaded is not None:
            self._apply(loaded)
        return loaded is not None

    def _load_if_changed(self) -> ResiliencyConfig | None:
        current = fingerprint(self._paths)
        if current == self._seen:
            return None
        self._seen = current
        config, _ = self._files.load()
        return config

    def _apply(self, config: ResiliencyConfig) -> None:
        self._engine.reload(config)
        if self._on_loaded is not None:
            self._on_loaded(config)
        names = ", ".join(config.resource_names) or "none"
        log.info("resiliency reloaded: %s", names)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            # Reading and parsing files runs off the event loop, so a large or slow
            # file never delays a call; only the swap of the snapshot runs on it.
            loaded = await asyncio.to_thread(self._load_if_changed)
            if loaded is not None:
                self._apply(loaded)
