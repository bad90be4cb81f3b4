"""A server under fuzzing, on its own event loop in a thread (hypothesis examples run
one after another in the test's thread), with what tether logged at ERROR meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

# Starts the server on the loop: its port, and how to stop it.
Start = Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]


@dataclass
class Running:
    port: int
    errors: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextlib.contextmanager
def served(start: Start) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port, stop = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        running = Running(port)
        handler = _Collect(running.errors)
        logging.getLogger("tether").addHandler(handler)
        try:
            yield running
        finally:
            logging.getLogger("tether").removeHandler(handler)
            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
