"""A grpc.aio server of raw-bytes methods for testing the lean client against grpcio:
in the test's own loop (``serve``) or as a process of its own (``python -m``, printing
its port) that a test can kill or pause."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc

SERVICE = "tether.test.Echo"
MAX_MESSAGE = 8 * 1024 * 1024


@dataclass
class Seen:
    """What the handlers observed, for the test to assert on."""

    time_remaining: list[float | None] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    peers: list[str] = field(default_factory=list)
    auth: list[dict[str, list[bytes]]] = field(default_factory=list)
    metadata: list[tuple[tuple[str, str | bytes], ...]] = field(default_factory=list)


def handler(seen: Seen) -> grpc.GenericRpcHandler:
    async def bidi(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        seen.peers.append(context.peer())
        async for request in requests:
            yield request

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.metadata.append(tuple(context.invocation_metadata() or ()))
        seen.auth.append({k: list(v) for k, v in context.auth_context().items()})
        await context.send_initial_metadata((("x-echo-head", "h"),))
        context.set_trailing_metadata((("x-echo-tail", "t"),))
        return request[::-1]

    async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for number in range(int(request)):
            yield str(number).encode()

    async def chunks(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        count, size = (int(part) for part in request.split(b":"))
        for number in range(count):
            yield bytes([number % 256]) * size

    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.decode())
        raise AssertionError("abort returned")

    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.time_remaining.append(context.time_remaining())
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.cancelled.set()
            raise
        return request

    identity = _identity
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi, identity, identity),
            "Unary": grpc.unary_unary_rpc_method_handler(unary, identity, identity),
            "Count": grpc.unary_stream_rpc_method_handler(count, identity, identity),
            "Chunks": grpc.unary_stream_rpc_method_handler(chunks, identity, identity),
            "Fail": grpc.unary_unary_rpc_method_handler(fail, identity, identity),
            "Slow": grpc.unary_unary_rpc_method_handler(slow, identity, identity),
        },
    )


def _identity(data: bytes) -> bytes:
    return data


@contextlib.asynccontextmanager
async def serve(
    seen: Seen,
    credentials: grpc.ServerCredentials | None = None,
    options: Sequence[tuple[str, int]] = (),
) -> AsyncIterator[int]:
    """A running server on loopback; yields its port, stops it on the way out."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            *options,
        ]
    )
    server.add_generic_rpc_handlers((handler(seen),))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def _main() -> None:
    async with serve(Seen()) as port:
        print(port, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
    sys.exit(0)
