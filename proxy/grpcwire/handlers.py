"""The methods a lean gRPC server hosts, and how each kind of handler is run:
unary calls answer in one go (headers, message and trailers in one write),
streaming handlers are async generators or coroutines writing through their call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from proxy.grpcwire.server_call import AbortError, ServerCall, StreamClosed

log = logging.getLogger("tether.grpcwire")

# handler(request or the call's request stream, call) -> awaitable answer, or an async iterator.
Handler = Callable[[Any, ServerCall], Any]


@dataclass(frozen=True, slots=True)
class RpcMethod:
    handler: Handler
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    client_streaming: bool
    server_streaming: bool


def unary_unary(
    handler: Handler, deserialize: Callable[[bytes], Any], serialize: Callable[[Any], bytes]
) -> RpcMethod:
    """``async def handler(request, call) -> response``."""
    return RpcMethod(handler, deserialize, serialize, False, False)


def unary_stream(
    handler: Handler, deserialize: Callable[[bytes], Any], serialize: Callable[[Any], bytes]
) -> RpcMethod:
    """``async def handler(request, call)`` yielding responses."""
    return RpcMethod(handler, deserialize, serialize, False, True)


def stream_stream(
    handler: Handler, deserialize: Callable[[bytes], Any], serialize: Callable[[Any], bytes]
) -> RpcMethod:
    """``handler(requests, call)``: an async generator of responses, or a coroutine that
    answers with ``call.write``; ``requests`` is the call, iterated."""
    return RpcMethod(handler, deserialize, serialize, True, True)


def _same(payload: bytes) -> bytes:
    return payload


def raw_stream_stream(handler: Handler) -> RpcMethod:
    """A relay's method: messages stay opaque bytes both ways (any call kind is a
    stream on the wire), ``handler(requests, call)`` as for ``stream_stream``."""
    return RpcMethod(handler, _same, _same, True, True)


async def run_unary(call: ServerCall, request: Any) -> None:
    await _answer(call, _unary(call, request))


async def run_streaming(call: ServerCall, argument: Any) -> None:
    await _answer(call, _streaming(call, argument))


async def _unary(call: ServerCall, request: Any) -> None:
    method = call.method
    response = await method.handler(request, call)
    if not call.finished:
        call.connection.send_message(call, method.serialize(response))


async def _streaming(call: ServerCall, argument: Any) -> None:
    result = call.method.handler(argument, call)
    if hasattr(result, "__anext__"):
        try:
            async for message in result:
                await call.write(message)
        finally:
            await result.aclose()
    else:
        await result


async def _answer(call: ServerCall, work: Coroutine[Any, Any, None]) -> None:
    """Run a handler's work and end the call with the status it earned."""
    connection = call.connection
    try:
        await work
    except AbortError as exc:
        connection.finish(call, exc.code, exc.message, exc.trailing)
    except StreamClosed:
        pass
    except asyncio.CancelledError:
        if not call.finished:
            raise  # not ours: a cancel from outside the call
    except Exception as exc:
        _unexpected(call, exc)
    else:
        connection.finish(call, "OK", "")


def _unexpected(call: ServerCall, exc: Exception) -> None:
    # A handler's defect: the caller gets UNKNOWN (as from grpcio), not a stream left open.
    log.error("gRPC handler failed on stream %d: %r", call.stream_id, exc)
    call.connection.finish(call, "UNKNOWN", f"Unexpected {type(exc).__name__}: {exc}")
