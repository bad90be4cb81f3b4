"""Flow control of the app channel on real loopback sockets: an answer the sidecar
has not read yet stays in the app (its writes wait), not in the sidecar's memory;
read later, it arrives whole and the connection goes back to the pool."""

from __future__ import annotations

import asyncio
import contextlib

from proxy.app.channel import HttpAppChannel
from proxy.core.body import Body

HOST = "127.0.0.1"
# Upper bound for any single wait; never asserted as a duration.
WAIT = 10.0
MiB = 1024 * 1024
TOTAL = 64 * MiB


def test_unread_answer_waits_in_the_app_then_arrives_whole() -> None:
    written = 0

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL)
                piece = b"a" * (256 * 1024)
                for _ in range(TOTAL // len(piece)):
                    writer.write(piece)
                    await writer.drain()
                    written += len(piece)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(app, HOST, 0)
        channel = HttpAppChannel(HOST, server.sockets[0].getsockname()[1])
        try:
            response = await asyncio.wait_for(channel.call("GET", "/big", [], Body(b"")), WAIT)
            assert response.status == 200
            assert not response.body.complete
            # Nobody reads the body: once the pipe is full the app's writes wait.
            last, still = -1, 0
            async with asyncio.timeout(WAIT):
                while still < 10:
                    await asyncio.sleep(0.02)
                    still = still + 1 if written == last else 0
                    last = written
            assert written < TOTAL // 2, written
            # What was in hand with the head comes whole; the rest in the usual pieces.
            received = len(response.body.head)
            assert response.body.rest is not None
            async with asyncio.timeout(WAIT * 3):
                async for chunk in response.body.rest:
                    assert len(chunk) <= 64 * 1024
                    received += len(chunk)
            assert received == TOTAL
            assert len(channel._idle) == 1  # read to the end: pooled again
        finally:
            await channel.close()
            server.close()

    asyncio.run(main())
