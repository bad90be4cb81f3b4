"""One worker of ``--workers N``: a whole sidecar, started by the supervisor
(``python -m proxy.worker FD``) with its settings on the inherited socket ``FD``.

It binds the shared ports with SO_REUSEPORT (``settings.reuse_port``), serves its
own metrics on a private loopback port that the supervisor scrapes, and tells the
supervisor when it is ready, why it could not start, or that ``POST
/v1.0/shutdown`` asked the sidecar to stop. SIGTERM/SIGINT drain it as they drain a
lone sidecar; so does the supervisor's disappearance (a killed supervisor must not
leave workers serving on its ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from proxy import worker_channel
from proxy.config.settings import SidecarSettings
from proxy.core.errors import TetherError
from proxy.hop import grpc_tuning
from proxy.observability.logs import configure_logging

log = logging.getLogger("tether.worker")


async def _send(writer: asyncio.StreamWriter, line: bytes) -> None:
    # The supervisor may be gone already; the worker still drains.
    with contextlib.suppress(ConnectionError):
        writer.write(line)
        await writer.drain()


async def _watch_supervisor(reader: asyncio.StreamReader, stop: Callable[[], None]) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read()
    log.warning("the supervisor is gone; shutting down")
    stop()


async def serve(settings: SidecarSettings, channel: socket.socket) -> int:
    from proxy.sidecar import Sidecar

    sidecar = Sidecar(settings)
    told = False  # stopped by a signal or the supervisor, not by the API

    def stop() -> None:
        nonlocal told
        told = True
        sidecar.request_shutdown()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    watch = asyncio.create_task(_watch_supervisor(reader, stop))
    try:
        try:
            await sidecar.start()
        except TetherError as exc:
            await _send(writer, worker_channel.message(worker_channel.ERROR, error=str(exc)))
            return 1
        port = sidecar.metrics_port
        await _send(writer, worker_channel.message(worker_channel.READY, metrics_port=port))
        # As run_sidecar: what start-up built lives as long as the process.
        gc.collect()
        gc.freeze()
        await sidecar.wait_stopped()
        if not told:
            await _send(writer, worker_channel.message(worker_channel.SHUTDOWN))
        log.info("shutting down")
    finally:
        watch.cancel()
        await sidecar.stop()
        writer.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    channel = socket.socket(fileno=int(args[0]))
    try:
        settings = worker_channel.receive_settings(channel)
    except (EOFError, OSError):
        return 1  # the supervisor is gone before it said anything
    configure_logging(settings.log_level, settings.app_id, settings.log_as_json)
    grpc_tuning.apply()  # before grpc is imported (by proxy.sidecar)
    import uvloop

    return uvloop.run(serve(settings, channel))


if __name__ == "__main__":
    sys.exit(main())
