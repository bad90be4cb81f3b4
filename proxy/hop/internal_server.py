"""The internal gRPC server: ``dapr.proto.internals.v1.ServiceInvocation`` as
a callee sidecar serves it to other sidecars (tether or daprd)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from proxy.app.channel import AppResponse
from proxy.core.body import Body, BodyTooLarge, close_body
from proxy.core.errors import AppChannelError, CallRejected, StreamProtocolError
from proxy.grpcwire.handlers import RpcMethod, stream_stream, unary_unary
from proxy.grpcwire.server_call import ServerCall
from proxy.hop.callee import Callee, declared_length, response_head
from proxy.hop.rpc_methods import CALL_LOCAL, CALL_LOCAL_STREAM
from proxy.hop.wire import abort, peer_identity
from proxy.observability.trace_propagation import grpc_metadata_trace
from proxy.protos import common_pb2, internals_pb2

if TYPE_CHECKING:
    # Types only: prometheus_client loads when metrics are on, not in every sidecar.
    from proxy.observability.metrics import Metrics


class ServiceInvocation:
    def __init__(
        self,
        callee: Callee,
        max_body_size: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._callee = callee
        self._max_body_size = max_body_size
        self._metrics = metrics

    def methods(self) -> dict[str, RpcMethod]:
        """Its methods for the internal server, by full path."""
        return {
            CALL_LOCAL: unary_unary(
                self.CallLocal,
                internals_pb2.InternalInvokeRequest.FromString,
                internals_pb2.InternalInvokeResponse.SerializeToString,
            ),
            CALL_LOCAL_STREAM: stream_stream(
                self.CallLocalStream,
                internals_pb2.InternalInvokeRequestStream.FromString,
                internals_pb2.InternalInvokeResponseStream.SerializeToString,
            ),
        }

    async def _serve(
        self,
        method: str,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        context: ServerCall,
    ) -> AppResponse:
        started = time.perf_counter()
        trace = grpc_metadata_trace(context.invocation_metadata())
        try:
            response = await self._callee.serve(
                request, body, peer_identity(context), trace, rpc=method
            )
        except CallRejected as exc:
            self._record(method, exc.code, started, len(body.head), 0)
            abort(context, exc.code, str(exc))
        head = response.body.head
        self._record(method, "OK", started, len(body.head), len(head))
        return response

    def _record(self, method: str, status: str, started: float, received: int, sent: int) -> None:
        # Counted when the answer's head is ready: bytes are those of the first messages.
        if self._metrics is not None:
            latency_ms = (time.perf_counter() - started) * 1000
            self._metrics.grpc_server(method, status, latency_ms, received, sent)

    async def CallLocal(
        self, request: internals_pb2.InternalInvokeRequest, context: ServerCall
    ) -> internals_pb2.InternalInvokeResponse:
        response = await self._serve(CALL_LOCAL, request, Body(request.message.data.value), context)
        try:
            data = await response.body.read_all(self._max_body_size)
        except (BodyTooLarge, AppChannelError) as exc:
            await close_body(response.body)
            abort(context, "INTERNAL", f"error invoking app channel: {exc}")
        message = response_head(response)
        message.message.data.value = data
        return message

    async def CallLocalStream(
        self,
        request_iterator: AsyncIterator[internals_pb2.InternalInvokeRequestStream],
        context: ServerCall,
    ) -> AsyncIterator[internals_pb2.InternalInvokeResponseStream]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("request"):
            abort(context, "INVALID_ARGUMENT", "first message has no request")
        head = b""
        expected_seq = 0
        if first.HasField("payload"):
            if first.payload.seq != 0:
                abort(context, "INVALID_ARGUMENT", "payload sequence must start at 0")
            head = first.payload.data
            expected_seq = 1
        length = declared_length(first.request)
        limit = self._max_body_size
        if (length is not None and length > limit) or len(head) > limit:
            abort(context, "RESOURCE_EXHAUSTED", str(BodyTooLarge(limit)))
        if length is not None and length == len(head):
            body = Body(head, None, length)  # complete: can be resent on a fresh app connection
        else:
            chunks = _request_chunks(request_iterator, expected_seq, limit, len(head))
            body = Body(head, chunks, length)
        response = await self._serve(CALL_LOCAL_STREAM, first.request, body, context)
        leading: internals_pb2.InternalInvokeResponseStream | None = (
            internals_pb2.InternalInvokeResponseStream(response=response_head(response))
        )
        seq = 0
        try:
            async for chunk in response.body.chunks():
                if leading is not None:
                    leading.payload.data = chunk
                    leading.payload.seq = 0
                    yield leading
                    leading = None
                else:
                    yield internals_pb2.InternalInvokeResponseStream(
                        payload=common_pb2.StreamPayload(data=chunk, seq=seq)
                    )
                seq += 1
        except AppChannelError as exc:
            # Headers may already be on their way; the caller sees a broken stream.
            abort(context, "INTERNAL", f"error invoking app channel: {exc}")
        finally:
            await close_body(response.body)
        if leading is not None:
            yield leading


async def _request_chunks(
    request_iterator: AsyncIterator[internals_pb2.InternalInvokeRequestStream],
    expected_seq: int,
    limit: int,
    size: int,
) -> AsyncIterator[bytes]:
    """The payloads after the first message while the body (``size`` bytes so far) fits in
    ``limit``, the callee's --max-body-size: a peer is held to it as the edge holds a client."""
    async for message in request_iterator:
        if message.HasField("request"):
            raise StreamProtocolError("request metadata in a non-leading message")
        if message.payload.seq != expected_seq:
            raise StreamProtocolError(
                f"payload sequence gap: got {message.payload.seq}, want {expected_seq}"
            )
        expected_seq += 1
        size += len(message.payload.data)
        if size > limit:
            raise BodyTooLarge(limit)
        yield message.payload.data
