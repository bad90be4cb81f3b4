"""The gRPC benchmark's target app: a plain grpcio (grpc.aio) server.

``python -m bench.grpc_app PORT`` listens on 127.0.0.1:PORT (h2c) and answers every
unary call, whatever its service and method, with the request's own bytes: no
protobuf decoding, so what is measured is the transport and whatever sits between
the client and this app.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


class AnyMethod(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every method path is served by the raw-bytes echo (no (de)serializers)."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(_echo)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((AnyMethod(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(grace=1.0)


def main() -> None:
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
