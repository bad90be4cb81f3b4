"""The soak's callee app: ``python -m bench.soak_app PORT LOG [DELAY_MS]``.

Every request is written to LOG (its path, one line) the moment its head is read,
before the app answers, so the log counts executions, including those whose answer
never got back to the caller. It then waits DELAY_MS (default 20, so calls are in
flight when a sidecar dies) and answers 200 with a small JSON body. One line per
request goes straight to the file: the log is complete whenever it is read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

BODY = b'{"ok":true}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
MAX_HEAD = 64 * 1024


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: int, delay: float
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD:
                return
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1] if b" " in lines[0] else b"?"
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or b"0")
            if length:
                await reader.readexactly(length)
            os.write(log, path + b"\n")  # one write per line: whole lines, in order
            if delay:
                await asyncio.sleep(delay)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int, log_path: str, delay: float) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, log, delay), "127.0.0.1", port, limit=MAX_HEAD
    )
    async with server:
        await stop.wait()
    os.close(log)


if __name__ == "__main__":
    delay_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], delay_ms / 1000))
