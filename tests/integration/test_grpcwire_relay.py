"""What a relay needs of the lean gRPC server, spoken to by a grpcio client: a method
chosen at call time for any path (``unknown_method`` given the path and headers),
raw messages, relayed response headers and trailers (any status, trailing metadata
with ``-bin`` values passed as they travel), the caller's deadline as time left."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import grpc
import pytest

from proxy.grpcwire.handlers import RpcMethod, raw_stream_stream
from proxy.grpcwire.server import GrpcServer
from proxy.grpcwire.server_call import ServerCall

WAIT = 15.0
DETAILS = b"\x08\x09\x12\x04nope"  # any bytes: relayed, never parsed


def b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


async def relay(requests: ServerCall, call: ServerCall) -> None:
    seen = dict(call.request_headers)
    remaining = call.time_remaining()
    call.send_raw_headers(
        [
            (b"x-path", seen[b":path"]),
            (b"x-remaining", f"{remaining:.3f}".encode() if remaining is not None else b"none"),
            (b"x-blob-bin", b64(b"\x00\xffok")),
        ]
    )
    async for message in requests:
        await call.write(message[::-1])
    if seen.get(b"x-fail") == b"yes":
        call.end_raw(
            [
                (b"grpc-status", b"9"),
                (b"grpc-message", b"no%20way"),
                (b"grpc-status-details-bin", b64(DETAILS)),
                (b"x-trailing", b"bye"),
            ]
        )
    else:
        call.end_raw([(b"grpc-status", b"0"), (b"x-trailing", b"bye")])


def route(path: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | RpcMethod:
    if (b"x-relay", b"yes") in headers:
        return raw_stream_stream(relay)
    return ("UNIMPLEMENTED", f"not relayed: {path.decode()}")


def _run(test: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(WAIT):
            return await test()

    return asyncio.run(bounded())


async def _serve() -> tuple[GrpcServer, grpc.aio.Channel]:
    server = GrpcServer({}, max_message_size=1 << 20, unknown_method=route)
    port = await server.listen("127.0.0.1", 0)
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def test_a_relay_runs_for_any_path_with_raw_headers_and_trailers() -> None:
    async def main() -> None:
        server, channel = await _serve()
        try:
            call = channel.stream_stream("/any.Service/Anything")(
                metadata=(("x-relay", "yes"),), timeout=10
            )
            for message in (b"abc", b"", b"xyz" * 1000):
                await call.write(message)
            await call.done_writing()
            replies = [reply async for reply in call]
            assert replies == [b"cba", b"", b"zyx" * 1000]
            initial = dict(await call.initial_metadata())
            assert initial["x-path"] == "/any.Service/Anything"
            assert 0 < float(initial["x-remaining"]) <= 10.5
            assert initial["x-blob-bin"] == b"\x00\xffok"
            assert await call.code() == grpc.StatusCode.OK
            assert dict(await call.trailing_metadata())["x-trailing"] == "bye"
        finally:
            await channel.close()
            await server.stop(0)

    _run(main)


def test_a_relayed_error_keeps_its_code_message_and_details() -> None:
    async def main() -> None:
        server, channel = await _serve()
        try:
            unary = channel.unary_unary("/any.Service/Fails")
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await unary(b"x", metadata=(("x-relay", "yes"), ("x-fail", "yes")))
            error = raised.value
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error.details() == "no way"
            trailing = dict(error.trailing_metadata() or ())
            assert trailing["grpc-status-details-bin"] == DETAILS
            assert trailing["x-trailing"] == "bye"
            # Not taken by the relay: the status unknown_method gave.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await unary(b"x")
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert refused.value.details() == "not relayed: /any.Service/Fails"
        finally:
            await channel.close()
            await server.stop(0)

    _run(main)
