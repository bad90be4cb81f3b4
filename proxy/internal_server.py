"""The internal gRPC server: ``dapr.proto.internals.v1.ServiceInvocation`` as
a callee sidecar serves it to other sidecars (tether or daprd)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc

from proxy.app_channel import AppResponse, HttpAppChannel
from proxy.body import Body, BodyTooLarge, close_body
from proxy.callee import call_app, declared_length
from proxy.errors import AppChannelError, InvalidMethod
from proxy.header_rules import CallerIdentity, response_metadata
from proxy.protos import common_pb2, internals_pb2, internals_pb2_grpc

log = logging.getLogger("tether.internal")

# Verifies the peer and returns its identity; None when mTLS is off.
IdentityCheck = Callable[[grpc.aio.ServicerContext], CallerIdentity | None]


class StreamProtocolError(Exception):
    """The caller broke the CallLocalStream framing (sequence gap, repeated header)."""


class ServiceInvocation(internals_pb2_grpc.ServiceInvocationServicer):  # type: ignore[misc]
    def __init__(
        self,
        app_channel: HttpAppChannel | None,
        identify_caller: IdentityCheck,
        app_api_token: str | None,
        max_body_size: int,
    ) -> None:
        self._app = app_channel
        self._identify = identify_caller
        self._app_api_token = app_api_token
        self._max_body_size = max_body_size

    async def _precheck(
        self, request: internals_pb2.InternalInvokeRequest, context: grpc.aio.ServicerContext
    ) -> tuple[HttpAppChannel, CallerIdentity | None]:
        caller = self._identify(context)
        if request.ver != internals_pb2.V1:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"unsupported api version {request.ver}"
            )
        if self._app is None:
            await context.abort(grpc.StatusCode.INTERNAL, "app channel not initialized")
        assert self._app is not None
        return self._app, caller

    async def CallLocal(
        self, request: internals_pb2.InternalInvokeRequest, context: grpc.aio.ServicerContext
    ) -> internals_pb2.InternalInvokeResponse:
        app, caller = await self._precheck(request, context)
        body = Body(request.message.data.value)
        response = await self._call_app(app, request, body, caller, context)
        try:
            data = await response.body.read_all(self._max_body_size)
        except (BodyTooLarge, AppChannelError) as exc:
            await close_body(response.body)
            await context.abort(grpc.StatusCode.INTERNAL, f"error invoking app channel: {exc}")
        message = internals_pb2.InternalInvokeResponse(
            status=internals_pb2.Status(code=response.status),
            headers=_to_pb_metadata(response_metadata(response.headers)),
            message=common_pb2.InvokeResponse(content_type=_content_type(response)),
        )
        message.message.data.value = data
        return message

    async def CallLocalStream(
        self,
        request_iterator: AsyncIterator[internals_pb2.InternalInvokeRequestStream],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[internals_pb2.InternalInvokeResponseStream]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("request"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message has no request")
        assert first is not None
        app, caller = await self._precheck(first.request, context)
        head = b""
        expected_seq = 0
        if first.HasField("payload"):
            if first.payload.seq != 0:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "payload sequence must start at 0"
                )
            head = first.payload.data
            expected_seq = 1
        length = declared_length(first.request)
        if length is not None and length == len(head):
            body = Body(head, None, length)  # complete: can be resent on a fresh app connection
        else:
            body = Body(head, _request_chunks(request_iterator, expected_seq), length)
        response = await self._call_app(app, first.request, body, caller, context)
        leading: internals_pb2.InternalInvokeResponseStream | None = (
            internals_pb2.InternalInvokeResponseStream(
                response=internals_pb2.InternalInvokeResponse(
                    status=internals_pb2.Status(code=response.status),
                    headers=_to_pb_metadata(response_metadata(response.headers)),
                    message=common_pb2.InvokeResponse(content_type=_content_type(response)),
                )
            )
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
            await context.abort(grpc.StatusCode.INTERNAL, f"error invoking app channel: {exc}")
        finally:
            await close_body(response.body)
        if leading is not None:
            yield leading

    async def _call_app(
        self,
        app: HttpAppChannel,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        caller: CallerIdentity | None,
        context: grpc.aio.ServicerContext,
    ) -> AppResponse:
        try:
            return await call_app(
                app, request, body, verified_caller=caller, app_api_token=self._app_api_token
            )
        except InvalidMethod as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (AppChannelError, StreamProtocolError) as exc:
            await context.abort(grpc.StatusCode.INTERNAL, f"error invoking app channel: {exc}")
        raise AssertionError("unreachable")


async def _request_chunks(
    request_iterator: AsyncIterator[internals_pb2.InternalInvokeRequestStream], expected_seq: int
) -> AsyncIterator[bytes]:
    async for message in request_iterator:
        if message.HasField("request"):
            raise StreamProtocolError("request metadata in a non-leading message")
        if message.payload.seq != expected_seq:
            raise StreamProtocolError(
                f"payload sequence gap: got {message.payload.seq}, want {expected_seq}"
            )
        expected_seq += 1
        yield message.payload.data


def _content_type(response: AppResponse) -> str:
    for name, value in response.headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return ""


def _to_pb_metadata(metadata: dict[str, list[str]]) -> dict[str, internals_pb2.ListStringValue]:
    return {key: internals_pb2.ListStringValue(values=values) for key, values in metadata.items()}
