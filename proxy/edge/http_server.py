"""The HTTP/1.1 API server: ``asyncio.Protocol`` connections feeding llhttp (httptools).

Framing and limits are enforced before any handler runs, so a malformed or
oversized request never reaches the pipeline (and so never the app):
CL+TE together, TE on HTTP/1.0, duplicate Host, bad chunking -> 400 and close;
a Transfer-Encoding other than chunked, a method llhttp does not know -> 501;
an HTTP version other than 1.0 and 1.1 -> 505; an over-long request line -> 414;
oversized headers -> 431; a body over the limit -> 413 and close; slow headers ->
connection closed.

The server knows no API's error wording: the wiring gives it a ``Reject`` that
turns a status and a reason into the body of an error answer (Dapr's JSON on
the API port). After an error answer it closes the way Go's server and nginx
do (a lingering close), so the client reads the answer instead of a reset.
The per-connection work lives in ``http_connection``; this module is the
public face (listen, stop) and the names the rest of the sidecar imports.
"""

from __future__ import annotations

import asyncio
import contextlib

from proxy.edge.http_connection import ServerConnection
from proxy.edge.http_messages import (
    ErrorBody,
    Handler,
    Headers,
    HttpLimits,
    HttpRequest,
    HttpResponse,
    Observer,
    PlainError,
    Reject,
    plain_reject,
)
from proxy.edge.http_site import Site

__all__ = [
    "ErrorBody",
    "Handler",
    "Headers",
    "HttpLimits",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "Observer",
    "PlainError",
    "Reject",
    "plain_reject",
]


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        limits: HttpLimits,
        observe: Observer | None = None,
        reject: Reject = plain_reject,
    ) -> None:
        self._site = Site(handler, limits, observe, reject)
        self._servers: list[asyncio.Server] = []

    async def listen(
        self, hosts: list[str], port: int, *, reuse_port: bool = False, serve: bool = True
    ) -> None:
        """``reuse_port``: share the port with other processes doing the same (workers).
        ``serve=False``: bind now (a taken port fails here) but accept nothing before
        ``serve()``; a socket that does not listen is not in a reuse-port group yet."""
        loop = asyncio.get_running_loop()
        for host in hosts:
            server = await loop.create_server(
                self._accept, host, port, reuse_port=reuse_port, start_serving=serve
            )
            self._servers.append(server)

    async def serve(self) -> None:
        """Start accepting on what ``listen(..., serve=False)`` bound."""
        for server in self._servers:
            await server.start_serving()

    @property
    def port(self) -> int:
        """The port bound (the one chosen when ``listen`` was given 0)."""
        return int(self._servers[0].sockets[0].getsockname()[1])

    def _accept(self) -> ServerConnection:
        return ServerConnection(self._site)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace``), close the rest."""
        for server in self._servers:
            server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._site.wait_idle(), grace)
        for connection in list(self._site.connections):
            connection.close()
