"""How ``tether run`` learns that the sidecar it started is ready to serve.

``tether run`` passes the write end of a pipe to its ``tether sidecar`` child and
names it in ``TETHER_READY_FD``. The sidecar writes one line there once it is ready:
a lone sidecar after its start-up, a supervisor once every worker is. Polling the
HTTP API cannot tell that: with ``--workers`` it reaches one worker, not all.
"""

from __future__ import annotations

import contextlib
import os
import select

ENV = "TETHER_READY_FD"
_READY = b"ready\n"


def announce_ready() -> None:
    """Tell the ``tether run`` that started this process, if one did, that it is ready."""
    text = os.environ.pop(ENV, None)
    if text is None or not text.isdigit():
        return
    fd = int(text)
    # The runner may be gone, or the descriptor not be ours after all: nothing to tell.
    with contextlib.suppress(OSError):
        os.write(fd, _READY)
    with contextlib.suppress(OSError):
        os.close(fd)


class ReadyPipe:
    """The runner's end: made before the sidecar starts, read until it says ready."""

    def __init__(self) -> None:
        self._read, self.write_fd = os.pipe()

    def child_env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, ENV: str(self.write_fd)}

    def started(self) -> None:
        """The child has its copy of the write end; ours must go, so EOF means it died."""
        os.close(self.write_fd)

    def wait(self, timeout: float) -> bool | None:
        """True once the sidecar said it is ready, False if it closed the pipe without
        saying so, None if ``timeout`` seconds passed without either."""
        readable, _, _ = select.select([self._read], [], [], timeout)
        if not readable:
            return None
        # One short write is atomic on a pipe: any byte means ready, none means EOF.
        return bool(os.read(self._read, len(_READY)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._read)
