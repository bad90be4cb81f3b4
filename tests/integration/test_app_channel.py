"""The app channel against a real loopback app that takes a request on a reused
connection and closes without answering: what may be sent again (Go's rule)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import pytest

from proxy.app.channel import HttpAppChannel
from proxy.core.body import Body
from proxy.core.errors import AppChannelError

HOST = "127.0.0.1"
# Upper bound for any single wait; never asserted as a duration.
WAIT = 5.0


@dataclass
class SilentOnSecondApp:
    """Answers the first request on each connection (keep-alive); reads the second
    one whole, records it, and closes the connection without a word."""

    seen: list[tuple[int, str, str, bytes]] = field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            for index in range(2):
                request, body = await _read_request(conn, reader)
                if request is None:
                    return
                verb, target = request.method.decode(), request.target.decode()
                self.seen.append((number, verb, target, body))
                if index == 1:
                    return  # the full request is in; close without answering
                answer = b"ok " + request.target
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=200, headers=[(b"content-length", b"%d" % len(answer))]
                        )
                    )
                    + (conn.send(h11.Data(data=answer)) or b"")
                    + (conn.send(h11.EndOfMessage()) or b"")
                )
                await writer.drain()
                conn.start_next_cycle()
        finally:
            writer.close()


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        else:
            return None, b""


def _run(scenario: Callable[[HttpAppChannel, SilentOnSecondApp], Awaitable[None]]) -> None:
    async def main() -> None:
        app = SilentOnSecondApp()
        server = await asyncio.start_server(app.serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        channel = HttpAppChannel(HOST, port)
        try:
            await asyncio.wait_for(scenario(channel, app), WAIT)
        finally:
            await channel.close()
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    asyncio.run(main())


async def _warm(channel: HttpAppChannel) -> None:
    """One answered call, so the next one goes out on a reused (pooled) connection."""
    response = await channel.call("GET", "/warm", [], Body(b""))
    assert response.status == 200
    assert await response.body.read_all(1024) == b"ok /warm"


def test_post_the_app_read_and_left_unanswered_is_not_sent_again() -> None:
    async def scenario(channel: HttpAppChannel, app: SilentOnSecondApp) -> None:
        await _warm(channel)
        with pytest.raises(AppChannelError, match="without answering"):
            await channel.call("POST", "/pay", [(b"content-type", b"text/plain")], Body(b"10 EUR"))
        assert [(verb, target, body) for _, verb, target, body in app.seen[1:]] == [
            ("POST", "/pay", b"10 EUR")
        ]
        assert app.connections == 1

    _run(scenario)


@pytest.mark.parametrize(
    ("verb", "headers"),
    [("GET", []), ("POST", [(b"idempotency-key", b"order-7")])],
    ids=["get", "post_with_idempotency_key"],
)
def test_replayable_request_is_sent_once_more_on_a_fresh_connection(
    verb: str, headers: list[tuple[bytes, bytes]]
) -> None:
    async def scenario(channel: HttpAppChannel, app: SilentOnSecondApp) -> None:
        await _warm(channel)
        response = await channel.call(verb, "/read", headers, Body(b""))
        assert response.status == 200
        assert await response.body.read_all(1024) == b"ok /read"
        # Once on the reused connection (unanswered), once on a new one (answered).
        assert [(number, target) for number, _, target, _ in app.seen] == [
            (1, "/warm"),
            (1, "/read"),
            (2, "/read"),
        ]

    _run(scenario)


def test_pooled_connection_reset_while_idle_is_skipped_under_uvloop() -> None:
    """The sidecar runs on uvloop, whose transports raise RuntimeError (not OSError)
    on a write after a reset; such a connection must be dropped, not used."""
    import socket
    import struct

    import uvloop

    served: list[str] = []

    async def answer_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request, _ = await _read_request(conn, reader)
        assert request is not None
        served.append(request.target.decode())
        writer.write(
            conn.send(h11.Response(status_code=204, headers=[]))
            + (conn.send(h11.EndOfMessage()) or b"")
        )
        await writer.drain()
        if len(served) == 1:  # the first connection: reset it once answered
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer_then_reset, HOST, 0)
        channel = HttpAppChannel(HOST, server.sockets[0].getsockname()[1])
        try:
            first = await channel.call("GET", "/first", [], Body(b""))
            assert first.status == 204
            pooled = channel._idle[0]
            async with asyncio.timeout(WAIT):
                while not pooled.is_closing():
                    await asyncio.sleep(0.01)  # until the loop has seen the reset
            second = await channel.call("GET", "/second", [], Body(b""))
            assert second.status == 204
            assert served == ["/first", "/second"]
        finally:
            await channel.close()
            server.close()

    uvloop.run(main())
