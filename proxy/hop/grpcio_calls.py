"""The grpcio side of a ``CallLocalStream`` call (to daprd peers, and to tether peers for
large or streamed bodies): writing the rest of the request, reading the rest of the
answer, and grpcio's failures as InvocationFailed, marked whether the call may have
reached the callee (see never_connected)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from proxy.core.body import BodyReadError
from proxy.core.errors import InvocationFailed
from proxy.protos import common_pb2, internals_pb2


async def write_rest(
    call: grpc.aio.StreamStreamCall, chunks: AsyncIterator[bytes], seq: int
) -> None:
    try:
        async for chunk in chunks:
            await call.write(
                internals_pb2.InternalInvokeRequestStream(
                    payload=common_pb2.StreamPayload(data=chunk, seq=seq)
                )
            )
            seq += 1
        await call.done_writing()
    except grpc.aio.AioRpcError:
        return  # the read side reports the call's failure
    except BodyReadError:
        # The client's body broke (too large, malformed chunking): abandon the call.
        call.cancel()
        raise


async def read_rest(
    call: grpc.aio.StreamStreamCall, writer: asyncio.Task[None] | None
) -> AsyncIterator[bytes]:
    finished = False
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                finished = True
                return
            yield message.payload.data
    except asyncio.CancelledError:
        raise_if_body_failed(writer)
        raise
    except grpc.aio.AioRpcError as exc:
        raise translate(exc) from exc
    finally:
        if not finished:
            call.cancel()
        if writer is not None:
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(BaseException):
                await writer


def raise_if_body_failed(writer: asyncio.Task[None] | None) -> None:
    """A read cancelled because the request body broke is a failed call, not a cancelled task."""
    if writer is None or not writer.done() or writer.cancelled():
        return
    failure = writer.exception()
    if failure is not None:
        raise InvocationFailed(f"request body failed: {failure}", "CANCELLED") from failure


# grpcio's words for an RPC that never had a connection to go out on (its
# "failed to connect to all addresses; last error: ... Connection refused",
# a TLS handshake failure, an unresolvable name); see never_connected.
_NOT_CONNECTED = (
    "failed to connect",
    "connection refused",
    "handshake failed",
    "dns resolution failed",
)


def never_connected(code: str, details: str) -> bool:
    """Whether a grpcio failure proves the call never reached the callee: UNAVAILABLE
    saying no connection was made, or UNAUTHENTICATED (refused before the app)."""
    if code == "UNAUTHENTICATED":
        return True
    text = details.lower()
    return code == "UNAVAILABLE" and any(words in text for words in _NOT_CONNECTED)


def translate(exc: grpc.aio.AioRpcError) -> InvocationFailed:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    details = exc.details() or ""
    return InvocationFailed(
        details or name.lower(), name, maybe_delivered=not never_connected(name, details)
    )
