"""A lean gRPC server on asyncio and the ``h2`` library: the same wire as grpcio
(h2c with prior knowledge, or TLS with ALPN "h2"), for the methods it is given
by full path ("/pkg.Service/Method"). Keepalive as daprd's: the server pings
every ``keepalive_time`` and drops a peer that leaves a ping unanswered for
``keepalive_timeout``; a connection without calls for ``idle_timeout`` is closed."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from proxy.grpcwire.handlers import RpcMethod
from proxy.grpcwire.server_connection import ServerConnection
from proxy.grpcwire.server_writer import ConnectionSettings, UnknownMethod

KEEPALIVE_TIME = 10.0
KEEPALIVE_TIMEOUT = 5.0
IDLE_TIMEOUT = 180.0


class GrpcServer:
    def __init__(
        self,
        methods: Mapping[str, RpcMethod],
        *,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None = None,
        identify: Callable[[Any], object] | None = None,
        keepalive_time: float = KEEPALIVE_TIME,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = 4096,
        unknown_method: UnknownMethod | None = None,
    ) -> None:
        """``identify`` turns the peer's certificate (``getpeercert()``, None without
        one) into what handlers see as ``call.peer``; it runs once per connection.
        When it raises ``PeerRefused``, every call on that connection ends
        UNAUTHENTICATED with the reason, and no handler runs. ``unknown_method``
        decides a call to a path not in ``methods`` (given the path and the request
        headers): a status to answer with, or a method to run (e.g. a relay)."""
        self._settings = ConnectionSettings(
            methods={path.encode("ascii"): method for path, method in methods.items()},
            max_message_size=max_message_size,
            identify=identify if ssl_context is not None else None,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            unknown_method=unknown_method,
        )
        self._ssl = ssl_context
        self._servers: list[asyncio.Server] = []
        self.connections: set[ServerConnection] = set()

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Start accepting on ``host``:``port`` (0: any free port); returns the port.

        ``reuse_port`` lets several processes share the port (SO_REUSEPORT); without
        it a port in use is an OSError, so a second server cannot start beside one.
        """
        loop = asyncio.get_running_loop()
        host = host.strip("[]")
        server = await self._create(loop, host, port, reuse_port)
        bound = {sock.getsockname()[1] for sock in server.sockets}
        if len(bound) > 1:
            # A name with several addresses got a different free port on each: use one.
            server.close()
            server = await self._create(loop, host, min(bound), reuse_port)
        self._servers.append(server)
        port_of: int = server.sockets[0].getsockname()[1]
        return port_of

    async def _create(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, reuse_port: bool
    ) -> asyncio.Server:
        def accept() -> ServerConnection:
            return ServerConnection(self._settings, loop, self.connections)

        server = await loop.create_server(
            accept, host, port, ssl=self._ssl, reuse_port=reuse_port or None, backlog=1024
        )
        return server

    async def stop(self, grace: float | None) -> None:
        """Stop accepting; GOAWAY each connection and let its calls finish for up to
        ``grace`` seconds (None: no limit), then cancel what is still running."""
        for server in self._servers:
            server.close()
        connections = list(self.connections)
        for connection in connections:
            connection.drain()
        waiting = [connection.lost for connection in connections]
        if waiting:
            await asyncio.wait(waiting, timeout=grace)
        for connection in connections:
            connection.close()
        if waiting:
            # The closes above end every connection; give their transports a moment.
            await asyncio.wait(waiting, timeout=1.0)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
