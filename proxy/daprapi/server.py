"""The Dapr gRPC API's listener: the lean gRPC server with ``DaprApi``'s methods on
every API address (``--dapr-listen-addresses``), at ``--dapr-grpc-port``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from proxy.core.errors import TetherError
from proxy.daprapi.service import DaprApi, unknown_method
from proxy.grpcwire.handlers import Handler, RpcMethod
from proxy.grpcwire.server import GrpcServer
from proxy.grpcwire.server_call import AbortError, ServerCall

# gRPC proxying: the relay for a call to a method not served here (by its path and
# request headers), or None when it is not proxied (no dapr-app-id).
Relay = Callable[[bytes, list[tuple[bytes, bytes]]], RpcMethod | None]


# Metrics.grpc_server: (full method, status, latency ms, bytes received, bytes sent).
RecordRpc = Callable[[str, str, float, int, int], None]


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
    api: DaprApi, listener: Listener, relay: Relay | None = None, record: RecordRpc | None = None
) -> GrpcServer:
    """Serve ``api`` (plaintext, like the HTTP API: the app is on this host) on every
    address at ``listener.port``; other methods go to ``relay`` when it takes them.
    Each API call is given to ``record`` (daprd's ``dapr_grpc_io_server_*``).
    Raises ApiPortUnavailable with the HTTP API's wording."""

    def other_method(
        path: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, str] | RpcMethod:
        method = relay(path, headers) if relay is not None else None
        return method if method is not None else unknown_method(path, headers)

    methods = api.methods()
    if record is not None:
        methods = {path: observed(path, method, record) for path, method in methods.items()}
    server = GrpcServer(
        methods,
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


def observed(path: str, method: RpcMethod, record: RecordRpc) -> RpcMethod:
    """``method`` (unary: every Dapr API method tether serves) with each call recorded."""
    inner: Handler = method.handler

    async def handler(request: Any, call: ServerCall) -> Any:
        started = time.perf_counter()
        received = request.ByteSize()
        status, sent = "UNKNOWN", 0
        try:
            response = await inner(request, call)
            status, sent = "OK", response.ByteSize()
            return response
        except AbortError as exc:
            status = exc.code
            raise
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        finally:
            record(path, status, (time.perf_counter() - started) * 1000, received, sent)

    return replace(method, handler=handler)
