"""``dapr.proto.runtime.v1.Dapr`` on the lean gRPC server: the token check,
``InvokeService`` through the same invoker as the HTTP API's invoke (resolution,
resiliency, metrics, tracing, the callee's access control), ``GetMetadata``, and
UNIMPLEMENTED for every other method."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

from proxy.app.health import HealthCheckSettings
from proxy.core.body import Body, BodyTooLarge, close_body
from proxy.core.errors import AppChannelError, InvalidMethod
from proxy.core.grpc_status import GRPC_CODE_NAMES, grpc_code_name
from proxy.core.method_path import normalize_method
from proxy.core.version import RUNTIME_VERSION
from proxy.daprapi.status_mapping import (
    GrpcError,
    error_from_http_status,
    error_from_invoke_error,
    request_headers,
    response_metadata,
)
from proxy.grpcwire.handlers import RpcMethod, unary_unary
from proxy.grpcwire.server_call import ServerCall
from proxy.hop.call import NO_VERB, Answer, GrpcReply, Invocation, InvokeError
from proxy.hop.grpc_answer import grpc_metadata
from proxy.protos import common_pb2, runtime_pb2

SERVICE = "dapr.proto.runtime.v1.Dapr"
INVOKE_SERVICE = f"/{SERVICE}/InvokeService"
GET_METADATA = f"/{SERVICE}/GetMetadata"

# HTTPExtension.Verb names. daprd's HTTP app channel refuses NONE and CONNECT (Go's
# net/http cannot send CONNECT): refused here already when the caller names one.
_VERB_NAMES = {number: name for name, number in common_pb2.HTTPExtension.Verb.items()}
_REFUSED_VERBS = frozenset(("NONE", "CONNECT"))

Invoke = Callable[[Invocation], Awaitable[Answer]]


def unknown_method(path: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[str, str]:
    """The status of a method tether does not serve (nor proxy) on the Dapr gRPC API port."""
    name = path.decode("utf-8", "replace").lstrip("/")
    if name.startswith(SERVICE + "/"):
        return (
            "UNIMPLEMENTED",
            f"{name} is not supported by tether: its Dapr gRPC API serves service"
            " invocation (InvokeService) and GetMetadata",
        )
    return (
        "UNIMPLEMENTED",
        f"unknown method {name}: for gRPC proxying to an app's own gRPC server, call it"
        " with metadata dapr-app-id: <app id>",
    )


class DaprApi:
    def __init__(
        self,
        app_id: str,
        invoke: Invoke,
        api_token: str | None,
        max_body_size: int,
        app_connection: runtime_pb2.AppConnectionProperties,
    ) -> None:
        self._app_id = app_id
        self._invoke = invoke
        self._api_token = api_token.encode("utf-8") if api_token else None
        self._max_body_size = max_body_size
        self._app_connection = app_connection

    def methods(self) -> dict[str, RpcMethod]:
        return {
            INVOKE_SERVICE: unary_unary(
                self.InvokeService,
                runtime_pb2.InvokeServiceRequest.FromString,
                common_pb2.InvokeResponse.SerializeToString,
            ),
            GET_METADATA: unary_unary(
                self.GetMetadata,
                runtime_pb2.GetMetadataRequest.FromString,
                runtime_pb2.GetMetadataResponse.SerializeToString,
            ),
        }

    def _check_token(self, call: ServerCall) -> None:
        """daprd's API token interceptor: with DAPR_API_TOKEN set, every call carries it."""
        expected = self._api_token
        if expected is None:
            return
        for key, value in call.invocation_metadata():
            if key == "dapr-api-token" and isinstance(value, str):
                if hmac.compare_digest(value.encode("utf-8"), expected):
                    return
                call.abort("UNAUTHENTICATED", "authentication error: api token mismatch")
        call.abort("UNAUTHENTICATED", "authentication error: missing api token in request")

    async def InvokeService(
        self, request: runtime_pb2.InvokeServiceRequest, call: ServerCall
    ) -> common_pb2.InvokeResponse:
        self._check_token(call)
        message = request.message
        try:
            method = normalize_method(message.method)
        except InvalidMethod as exc:
            call.abort("INVALID_ARGUMENT", f"failed to invoke, id: {request.id}, err: {exc}")
        extension = message.http_extension
        # No HTTP extension: fine for a gRPC app; the callee refuses it for an HTTP app
        # (as daprd's HTTP app channel does).
        verb = NO_VERB
        if message.HasField("http_extension"):
            verb = _VERB_NAMES.get(extension.verb, "NONE")
            if verb in _REFUSED_VERBS:
                call.abort("INVALID_ARGUMENT", "invalid HTTP verb")
        invocation = Invocation(
            target_id=request.id,
            method=method,
            verb=verb,
            path=INVOKE_SERVICE,
            query=extension.querystring,
            headers=request_headers(call.invocation_metadata(), message.content_type),
            body=Body(message.data.value),
            grpc_api=True,
        )
        try:
            answer = await self._invoke(invocation)
        except InvokeError as exc:
            _fail(call, error_from_invoke_error(exc))
        try:
            data = await answer.body.read_all(self._max_body_size)
        except (BodyTooLarge, AppChannelError) as exc:
            await close_body(answer.body)
            _fail(call, GrpcError("INTERNAL", f"failed to invoke, id: {request.id}, err: {exc}"))
        if answer.grpc is not None:
            return _pass_through(call, answer.grpc, data)
        call.send_initial_metadata(response_metadata(answer.headers, answer.status))
        error = error_from_http_status(answer.status, data)
        if error is not None:
            _fail(call, error)
        response = common_pb2.InvokeResponse(content_type=_content_type(answer))
        response.data.value = data
        return response

    async def GetMetadata(
        self, request: runtime_pb2.GetMetadataRequest, call: ServerCall
    ) -> runtime_pb2.GetMetadataResponse:
        self._check_token(call)
        response = runtime_pb2.GetMetadataResponse(id=self._app_id, runtime_version=RUNTIME_VERSION)
        response.app_connection_properties.CopyFrom(self._app_connection)
        return response


def app_connection_properties(
    port: int | None,
    protocol: str,
    channel_address: str,
    max_concurrency: int,
    health: HealthCheckSettings | None,
) -> runtime_pb2.AppConnectionProperties:
    """What GetMetadata says of the app channel (as /v1.0/metadata does)."""
    properties = runtime_pb2.AppConnectionProperties(
        protocol=protocol, channel_address=channel_address
    )
    if port is not None:
        properties.port = port
    if max_concurrency > 0:
        properties.max_concurrency = max_concurrency
    if health is not None:
        properties.health.health_check_path = health.path
        properties.health.health_probe_interval = f"{health.interval:g}s"
        properties.health.health_probe_timeout = f"{health.timeout * 1000:g}ms"
        properties.health.health_threshold = health.threshold
    return properties


def _pass_through(call: ServerCall, reply: GrpcReply, data: bytes) -> NoReturn:
    """A gRPC app's answer as daprd's InvokeService gives it: the app's status (with its
    details), its header metadata (permanent HTTP names as ``dapr-<name>``) and its
    trailer metadata; the InvokeResponse as the app sent it when the status is OK."""
    call.send_initial_metadata(grpc_metadata(reply.headers, http_conversion=True))
    trailing = grpc_metadata(reply.trailers, http_conversion=False)
    code = grpc_code_name(reply.code)
    if code != "OK":
        if reply.details:
            trailing.append(("grpc-status-details-bin", reply.details))
        call.abort(code, reply.message, trailing)
    response = common_pb2.InvokeResponse(content_type=reply.content_type)
    response.data.value = data
    response.data.type_url = reply.type_url
    # The response goes out now; an OK "abort" then ends the call with the app's trailers
    # (a unary handler's return value could carry none).
    call.connection.send_message(call, call.method.serialize(response))
    call.abort("OK", "", trailing)


def _content_type(answer: Answer) -> str:
    for name, value in answer.headers:
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return ""


def _fail(call: ServerCall, error: GrpcError) -> NoReturn:
    trailing: list[tuple[str, str | bytes]] = []
    if error.error_info is not None:
        trailing.append(("grpc-status-details-bin", status_details(error)))
    call.abort(error.code, error.message, trailing)


def status_details(error: GrpcError) -> bytes:
    """``google.rpc.Status`` with the ErrorInfo, as grpc-go's status.WithDetails encodes it."""
    # Only on this error path: googleapis-common-protos need not load in every sidecar.
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status(code=GRPC_CODE_NAMES.index(error.code), message=error.message)
    if error.error_info is not None:
        reason, domain, metadata = error.error_info
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata)
        )
    return bytes(status.SerializeToString())
