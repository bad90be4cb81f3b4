"""The Dapr gRPC API's listener: the lean gRPC server with ``DaprApi``'s methods on
every API address (``--dapr-listen-addresses``), at ``--dapr-grpc-port``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from proxy.core.errors import TetherError
from proxy.daprapi.service import DaprApi, unknown_method
from proxy.grpcwire.handlers import RpcMethod
from proxy.grpcwire.server import GrpcServer

# gRPC proxying: the relay for a call to a method not served here (by its path and
# request headers), or None when it is not proxied (no dapr-app-id).
Relay = Callable[[bytes, list[tuple[bytes, bytes]]], RpcMethod | None]


class ApiPortUnavailable(TetherError):
    """The gRPC API port cannot be bound (in use, or an address not of this host)."""


@dataclass(frozen=True, slots=True)
class Listener:
    addresses: Sequence[str]
    port: int  # a real port: the app is told it (DAPR_GRPC_PORT)
    max_message_size: int
    max_connections: int
    reuse_port: bool = False


async def listen_dapr_api(
    api: DaprApi, listener: Listener, relay: Relay | None = None
) -> GrpcServer:
    """Serve ``api`` (plaintext, like the HTTP API: the app is on this host) on every
    address at ``listener.port``; other methods go to ``relay`` when it takes them.
    Raises ApiPortUnavailable with the HTTP API's wording."""

    def other_method(
        path: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, str] | RpcMethod:
        method = relay(path, headers) if relay is not None else None
        return method if method is not None else unknown_method(path, headers)

    server = GrpcServer(
        api.methods(),
        max_message_size=listener.max_message_size,
        max_connections=listener.max_connections,
        unknown_method=other_method,
    )
    try:
        for address in listener.addresses:
            await server.listen(address, listener.port, reuse_port=listener.reuse_port)
    except OSError as exc:
        await server.stop(0)
        raise ApiPortUnavailable(
            f"cannot listen on gRPC API port {listener.port}: {exc.strerror or exc}"
        ) from exc
    return server
