"""The lean gRPC client's public face: ``Channel``, calls to one peer address over
one HTTP/2 connection at a time (TLS with ALPN "h2", or h2c with prior knowledge),
dialled when first needed and again after it fails or the server sends GOAWAY.

Usage::

    channel = Channel("127.0.0.1", 50002, ClientSettings())
    stream = await channel.open("/pkg.Service/Method", timeout=5.0)
    stream.write(request_bytes)
    stream.end()
    reply = await stream.read()      # None at the end
    status = await stream.status()   # Status("OK", "")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from proxy.grpcwire.client_connection import ClientConnection, ClientSettings, Metadata
from proxy.grpcwire.client_status import RpcError, Status
from proxy.grpcwire.client_stream import ClientStream, StreamListener
from proxy.grpcwire.peer import PeerCheck, PeerRefused

__all__ = [
    "Channel",
    "ClientSettings",
    "ClientStream",
    "RpcError",
    "Status",
    "StreamListener",
    "dial",
]

log = logging.getLogger("tether.grpcwire")


async def dial(
    host: str,
    port: int,
    settings: ClientSettings,
    ssl_context: ssl.SSLContext | None = None,
    server_name: str | None = None,
    verify_peer: PeerCheck | None = None,
) -> ClientConnection:
    """A new connection; raises RpcError(UNAVAILABLE, refused) when it cannot be made in time.

    With TLS the server's certificate must be valid for ``server_name`` (also the
    ``:authority``) and pass ``verify_peer`` (given ``getpeercert()``, raising
    PeerRefused), checked before any call is sent; without, ``:authority`` is the
    address. A refused peer is logged at warning: it is misconfigured or an impostor."""
    loop = asyncio.get_running_loop()
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    authority = server_name if server_name is not None and ssl_context is not None else address
    scheme = b"https" if ssl_context is not None else b"http"
    try:
        async with asyncio.timeout(settings.connect_timeout):
            transport, connection = await loop.create_connection(
                lambda: ClientConnection(settings, authority, scheme),
                host,
                port,
                ssl=ssl_context,
                server_hostname=server_name if ssl_context is not None else None,
            )
    except TimeoutError:
        raise RpcError(
            "UNAVAILABLE", f"failed to connect to {address}: timed out", refused=True
        ) from None
    except ssl.SSLCertVerificationError as exc:
        reason = f"TLS handshake with {address} failed: {exc.verify_message or exc}"
        log.warning("refused the gRPC server at %s: %s", address, reason)
        raise RpcError("UNAVAILABLE", reason, refused=True) from exc
    except ssl.SSLError as exc:
        raise RpcError(
            "UNAVAILABLE", f"TLS handshake with {address} failed: {exc}", refused=True
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RpcError(
            "UNAVAILABLE", f"failed to connect to {address}: {reason}", refused=True
        ) from exc
    if ssl_context is not None:
        tls = transport.get_extra_info("ssl_object")
        if tls is None or tls.selected_alpn_protocol() != "h2":
            transport.abort()
            raise RpcError(
                "UNAVAILABLE", f"{address} did not negotiate HTTP/2 (ALPN h2)", refused=True
            )
        if verify_peer is not None:
            try:
                verify_peer(tls.getpeercert())
            except PeerRefused as exc:
                transport.abort()
                log.warning("refused the gRPC server at %s: %s", address, exc.reason)
                raise RpcError(
                    "UNAVAILABLE", f"peer at {address} refused: {exc.reason}", refused=True
                ) from exc
    return connection


class Channel:
    """Calls to one peer; at most one connection dialled at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        settings: ClientSettings,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        verify_peer: PeerCheck | None = None,
    ) -> None:
        """``verify_peer``: see ``dial``; every connection dialled is checked."""
        self._host = host
        self._port = port
        self._settings = settings
        self._ssl = ssl_context
        self._server_name = server_name
        self._verify_peer = verify_peer
        self._connection: ClientConnection | None = None
        self._dialing: asyncio.Task[ClientConnection] | None = None
        self._closed = False

    async def open(
        self,
        path: str,
        metadata: Metadata = (),
        timeout: float | None = None,
        listener: StreamListener | None = None,
    ) -> ClientStream:
        """Start a call (dialling first if needed). Raises RpcError."""
        connection = self._connection
        if connection is None or not connection.usable:
            connection = await self._connect()
        return connection.open(path, metadata, timeout, listener)

    async def _connect(self) -> ClientConnection:
        if self._closed:
            # Nothing was sent: to the caller this is an unreachable peer (retried as one),
            # e.g. a call that took the channel just before a failure discarded it.
            raise RpcError("UNAVAILABLE", "channel closed before the call started", refused=True)
        dialing = self._dialing
        if dialing is None:
            dialing = asyncio.get_running_loop().create_task(
                dial(
                    self._host,
                    self._port,
                    self._settings,
                    self._ssl,
                    self._server_name,
                    self._verify_peer,
                )
            )
            dialing.add_done_callback(self._dialled)
            self._dialing = dialing
        # Shielded: one caller giving up must not cancel the dial the others wait for.
        return await asyncio.shield(dialing)

    def _dialled(self, dialing: asyncio.Task[ClientConnection]) -> None:
        if self._dialing is dialing:
            self._dialing = None
        if dialing.cancelled() or dialing.exception() is not None:
            return
        connection = dialing.result()
        if self._closed:
            connection.close()
            return
        # A draining predecessor closes itself when its last stream ends.
        self._connection = connection

    async def drain(self, grace: float) -> None:
        """Take no new calls; let the open ones finish for up to ``grace`` seconds
        (long streams too, e.g. when certificates are renewed), then close."""
        self._closed = True
        connection = self._connection
        if connection is not None:
            connection.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(connection.lost), grace)
        self.close()

    def close(self) -> None:
        """Close the connection; open calls end CANCELLED."""
        self._closed = True
        if self._dialing is not None:
            self._dialing.cancel()
            self._dialing = None
        if self._connection is not None:
            with contextlib.suppress(RuntimeError):  # the loop may be closing
                self._connection.close()
            self._connection = None
