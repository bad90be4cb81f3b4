"""Sentry's two small HTTP ports: ``GET /healthz`` (200 once serving, 503 before, as
Dapr Sentry's healthz server) and ``GET /metrics`` (Prometheus text). One request per
connection, parsed by h11; anything else is 404 or 405."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11

Route = Callable[[], tuple[int, bytes, str]]  # status, body, content type
_READ_LIMIT = 64 * 1024
_TIMEOUT = 10.0


async def start_http(host: str, port: int, routes: dict[str, Route]) -> asyncio.Server:
    """Serve ``routes`` (path -> answer) on ``host:port``; port 0 takes a free one."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(_answer(reader, writer, routes), _TIMEOUT)
        except (TimeoutError, OSError, h11.ProtocolError):
            pass  # a slow or broken client: just close
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: dict[str, Route]
) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_READ_LIMIT)
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(4096)
            connection.receive_data(data)
            if not data:
                return
            continue
        if isinstance(event, h11.Request):
            break
        return
    target = event.target.decode("ascii", "replace").split("?", 1)[0]
    route = routes.get(target)
    if route is None:
        status, body, kind = 404, b"not found\n", "text/plain"
    elif event.method not in (b"GET", b"HEAD"):
        status, body, kind = 405, b"method not allowed\n", "text/plain"
    else:
        status, body, kind = route()
    headers = [
        ("content-type", kind),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    writer.write(connection.send(h11.Response(status_code=status, headers=headers)) or b"")
    if event.method != b"HEAD":
        writer.write(connection.send(h11.Data(data=body)) or b"")
    writer.write(connection.send(h11.EndOfMessage()) or b"")
    await writer.drain()
