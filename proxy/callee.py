"""The callee half of an invocation: turn an ``InternalInvokeRequest`` (from a
remote sidecar, or built locally for a call to our own app) into a call on the
app channel, and the app's answer into an ``InternalInvokeResponse``. Shared by
the Dapr-compatible internal server, tether's multiplexed transport, and the
local shortcut."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.app_channel import AppResponse, HttpAppChannel
from proxy.app_health import AppHealthState
from proxy.body import Body, BodyReadError
from proxy.errors import AppChannelError, CallRejected, InvalidMethod, StreamProtocolError
from proxy.header_rules import CallerIdentity, app_request_headers, response_metadata
from proxy.method_path import normalize_method
from proxy.protos import common_pb2, internals_pb2

_VERB_NAMES = {
    value.number: value.name for value in common_pb2.HTTPExtension.Verb.DESCRIPTOR.values
}


@dataclass(frozen=True, slots=True)
class AppCall:
    verb: str
    target: str
    headers: list[tuple[bytes, bytes]]


def prepare_app_call(
    request: internals_pb2.InternalInvokeRequest,
    *,
    verified_caller: CallerIdentity | None,
    app_api_token: str | None,
) -> AppCall:
    """Validate and translate the request. Raises InvalidMethod (gRPC InvalidArgument)."""
    message = request.message
    method = normalize_method(message.method)
    if message.HasField("http_extension"):
        verb = _VERB_NAMES.get(message.http_extension.verb, "POST")
        query = message.http_extension.querystring
    else:
        # Callers that invoke without an HTTP extension (gRPC InvokeService) mean POST.
        verb, query = "POST", ""
    if verb in ("NONE", "CONNECT"):
        raise InvalidMethod(f"verb {verb} is not allowed towards the app")
    metadata = {key: list(value.values) for key, value in request.metadata.items()}
    headers = app_request_headers(
        metadata, verified_caller=verified_caller, app_api_token=app_api_token
    )
    if message.content_type:
        headers.append((b"content-type", message.content_type.encode("latin-1")))
    target = "/" + method + ("?" + query if query else "")
    return AppCall(verb, target, headers)


def declared_length(request: internals_pb2.InternalInvokeRequest) -> int | None:
    """The caller's Content-Length, carried in metadata, so the app sees the same framing."""
    for key, value in request.metadata.items():
        if key.lower() == "content-length" and value.values:
            text = value.values[0]
            if text.isascii() and text.isdigit():
                return int(text)
    return None


async def call_app(
    channel: HttpAppChannel,
    request: internals_pb2.InternalInvokeRequest,
    body: Body,
    *,
    verified_caller: CallerIdentity | None,
    app_api_token: str | None,
) -> AppResponse:
    call = prepare_app_call(request, verified_caller=verified_caller, app_api_token=app_api_token)
    return await channel.call(call.verb, call.target, call.headers, body)


@dataclass(frozen=True, slots=True)
class Callee:
    """What every inbound transport needs to hand a call to the local app."""

    app: HttpAppChannel | None
    app_api_token: str | None
    # Set when app health checks are on: calls are refused while it is unhealthy.
    health: AppHealthState | None = None

    async def serve(
        self,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        caller: CallerIdentity | None,
    ) -> AppResponse:
        """Call the app; raise CallRejected with the gRPC code Dapr would answer."""
        if request.ver != internals_pb2.V1:
            raise CallRejected("UNIMPLEMENTED", f"unsupported api version {request.ver}")
        if self.app is None:
            raise CallRejected("INTERNAL", "app channel not initialized")
        if self.health is not None and not self.health.healthy:
            raise CallRejected("INTERNAL", "app is not in a healthy state")
        try:
            return await call_app(
                self.app, request, body, verified_caller=caller, app_api_token=self.app_api_token
            )
        except InvalidMethod as exc:
            raise CallRejected("INVALID_ARGUMENT", str(exc)) from exc
        except (AppChannelError, StreamProtocolError, BodyReadError) as exc:
            raise CallRejected("INTERNAL", f"error invoking app channel: {exc}") from exc


def response_head(response: AppResponse) -> internals_pb2.InternalInvokeResponse:
    """The app's status and headers as Dapr carries them (body not included)."""
    content_type = ""
    for name, value in response.headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
            break
    return internals_pb2.InternalInvokeResponse(
        status=internals_pb2.Status(code=response.status),
        headers={
            key: internals_pb2.ListStringValue(values=values)
            for key, values in response_metadata(response.headers).items()
        },
        message=common_pb2.InvokeResponse(content_type=content_type),
    )
