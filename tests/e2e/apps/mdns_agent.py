"""A sidecar's mDNS half, alone: registers APP_ID with ``MdnsSource`` and answers lookup
commands read from stdin, one JSON line each, until stdin closes or SIGTERM arrives
(then it sends its goodbyes and prints ``{"closed": true}``).

    python mdns_agent.py APP_ID HOST_ADDRESS INTERNAL_PORT
    stdin:  lookup orders
    stdout: {"endpoints": ["198.18.0.1:50002"], "ttl": 2.0}
            {"error": "AppNotFound", "message": "..."}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading

import uvloop

from proxy.discovery.mdns import MdnsSource
from proxy.discovery.source import SourceError


def emit(payload: object) -> None:
    print(json.dumps(payload), flush=True)


async def main(app_id: str, address: str, port: int) -> None:
    source = MdnsSource(app_id, "default", address, port)
    await source.start()
    emit({"ready": True, "instance": source.instance, "server": source.server})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(stop.set)

    # A daemon thread: asyncio.run would wait for an executor thread stuck in readline.
    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        while not stop.is_set():
            next_line = asyncio.ensure_future(lines.get())
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({next_line, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if next_line not in done:
                next_line.cancel()
                break
            stopped.cancel()
            command, _, target = next_line.result().strip().partition(" ")
            if command != "lookup":
                emit({"error": "BadCommand", "message": command})
                continue
            try:
                answer = await source.lookup(target, "default")
            except SourceError as exc:
                emit({"error": type(exc).__name__, "message": str(exc)})
            else:
                emit({"endpoints": [e.address for e in answer.endpoints], "ttl": answer.ttl})
    finally:
        await source.close()
        emit({"closed": True})


if __name__ == "__main__":
    if os.environ.get("MDNS_AGENT_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        logging.getLogger("zeroconf").setLevel(logging.DEBUG)
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))  # as tether runs
