"""The callee half of an invocation: turn an ``InternalInvokeRequest`` (from a
remote sidecar, or built locally for a call to our own app) into a call on the
app channel, and the app's answer into an ``InternalInvokeResponse``. Shared by
the Dapr-compatible internal server, tether's multiplexed transport, and the
local shortcut."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from proxy.app.channel import AppResponse, HttpAppChannel
from proxy.app.grpc_channel import GrpcAppChannel
from proxy.app.health import AppHealthState
from proxy.core.body import Body, BodyReadError, BodyTooLarge
from proxy.core.errors import AppChannelError, CallRejected, InvalidMethod, StreamProtocolError
from proxy.core.grpc_status import GRPC_CODE_NAMES
from proxy.core.method_path import normalize_method
from proxy.hop.access_control import NO_VERB, AccessControl, Decision, denied_message
from proxy.hop.grpc_app_rules import app_metadata, fill_grpc_head
from proxy.hop.header_rules import (
    CALLER_APP_ID,
    CallerIdentity,
    app_request_headers,
    first_value,
    header_value_bytes,
    response_metadata,
)
from proxy.hop.rpc_methods import CALL_LOCAL
from proxy.observability.spans import call_local_span_name, callee_span_attributes
from proxy.observability.trace_context import TraceContext
from proxy.observability.trace_propagation import app_headers_with_trace, metadata_trace
from proxy.observability.tracer import SpanHandle, Tracer
from proxy.protos import common_pb2, internals_pb2

if TYPE_CHECKING:
    # Types only: prometheus_client loads when metrics are on, not in every sidecar.
    from proxy.observability.metrics import Metrics

log = logging.getLogger("tether.callee")

# What an HTTP/1 request target may hold as it is: visible ASCII.
_TARGET_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F))

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
    if not message.HasField("http_extension"):
        # daprd's HTTP app channel: only a gRPC app takes a call without one.
        raise InvalidMethod("missing HTTP extension field")
    verb = _VERB_NAMES.get(message.http_extension.verb, "POST")
    query = message.http_extension.querystring
    if verb in ("NONE", "CONNECT"):
        raise InvalidMethod(f"verb {verb} is not allowed towards the app")
    # The repeated fields themselves, not copies: they are only read. (Keys then
    # lookups: a protobuf map's items() is a pure-Python view, slower per entry.)
    carried = request.metadata
    metadata = {key: carried[key].values for key in carried}
    headers = app_request_headers(
        metadata, verified_caller=verified_caller, app_api_token=app_api_token
    )
    content_type = header_value_bytes(message.content_type)
    if content_type:
        headers.append((b"content-type", content_type))
    return AppCall(verb, request_target(method, query), headers)


def request_target(method: str, query: str) -> str:
    """The app's request target for a normalised method and a raw query.

    A method from a gRPC peer may hold spaces or non-ASCII text: those are
    percent-encoded (UTF-8), as Go's URL does for daprd; everything else,
    existing escapes included, is kept as it is. The query is forwarded verbatim
    (as Dapr does), so one that no HTTP/1 request line can carry is refused.
    Raises CallRejected.
    """
    if not _TARGET_SAFE.issuperset(method):
        method = "".join(ch if ch in _TARGET_SAFE else quote(ch, safe="") for ch in method)
    if not _TARGET_SAFE.issuperset(query):
        raise CallRejected("INTERNAL", f"error invoking app channel: invalid query {query!r}")
    return "/" + method + ("?" + query if query else "")


def declared_length(request: internals_pb2.InternalInvokeRequest) -> int | None:
    """The caller's Content-Length, carried in metadata, so the app sees the same framing."""
    for key, value in request.metadata.items():
        if key.lower() == "content-length" and value.values:
            text = value.values[0]
            if text.isascii() and text.isdigit():
                return int(text)
    return None


# A gRPC app is called with no HTTP request: what the HTTP metrics would label.
_NO_HTTP_CALL = AppCall("", "", [])


@dataclass(frozen=True, slots=True)
class Callee:
    """What every inbound transport needs to hand a call to the local app."""

    app: HttpAppChannel | GrpcAppChannel | None
    app_api_token: str | None
    # Set when app health checks are on: calls are refused while it is unhealthy.
    health: AppHealthState | None = None
    metrics: Metrics | None = None
    tracer: Tracer | None = None
    app_id: str = ""
    # spec.accessControl; None: every caller may call every method.
    access_control: AccessControl | None = None

    async def serve(
        self,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        caller: CallerIdentity | None,
        trace_parent: TraceContext | None = None,
        *,
        rpc: str = CALL_LOCAL,
        local: bool = False,
    ) -> AppResponse:
        """Call the app; raise CallRejected with the gRPC code Dapr would answer.

        ``trace_parent`` is a context from gRPC call metadata (``grpc-trace-bin``),
        used when the invocation's own metadata carries none. ``rpc`` is the full
        name of the RPC that carried the call, for the span's ``dapr.api`` (the
        local shortcut stands in for a unary CallLocal). ``local``: our own app
        calls itself through us, which access control does not judge (as in daprd,
        whose local invocation goes straight to the app channel).
        """
        metrics = self.metrics
        source = caller.app_id if caller is not None else _claimed_caller(request)
        if metrics is not None:
            metrics.req_recv(source)
        span = None
        if self.tracer is not None and self.tracer.enabled:
            method = request.message.method
            span = self.tracer.start_server_span(
                call_local_span_name(self.app_id, method),
                metadata_trace(request) or trace_parent,
                callee_span_attributes(method, api=rpc),
            )
        try:
            response, call, latency_ms = await self._serve(
                request, body, caller, span.context if span is not None else None, local
            )
        except CallRejected as exc:
            self._rejected(exc, source, span)
            raise
        except Exception as exc:
            # A defect of ours, not the caller's: the call still gets Dapr's error
            # (never a Python class name), and the log one line, not a traceback.
            detail = " ".join(str(exc).split())
            log.error("could not serve a call to %r: %s", request.message.method[:200], detail)
            rejected = CallRejected("INTERNAL", f"error invoking app channel: {detail}")
            self._rejected(rejected, source, span)
            raise rejected from exc
        if response.grpc is not None:
            if span is not None:
                span.set_status_code(response.status, protocol="grpc")
                span.end()
            if metrics is not None:
                metrics.res_sent(source, str(response.status))
            return response
        if span is not None:
            span.set_status_code(response.status)
            span.end()
        if metrics is not None:
            sent = len(body.head) if body.complete else (body.length or 0)
            received = len(response.body.head) if response.body.complete else 0
            status = response.status
            metrics.http_client(call.verb, call.target, status, latency_ms, sent, received)
            metrics.res_sent(source, str(status))
        return response

    def _rejected(self, exc: CallRejected, source: str, span: SpanHandle | None) -> None:
        if self.metrics is not None:
            self.metrics.res_sent(source, exc.code)
        if span is not None:
            span.set_status_code(GRPC_CODE_NAMES.index(exc.code), protocol="grpc")
            span.end()

    async def _serve(
        self,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        caller: CallerIdentity | None,
        trace: TraceContext | None,
        local: bool,
    ) -> tuple[AppResponse, AppCall, float]:
        """The app's response, the HTTP request it was (empty for a gRPC app), and
        how long the app took (ms)."""
        if request.ver != internals_pb2.V1:
            raise CallRejected("UNIMPLEMENTED", f"unsupported api version {request.ver}")
        if self.app is None:
            raise CallRejected("INTERNAL", "app channel not initialized")
        if self.access_control is not None and not local:
            self._check_access(self.access_control, request, caller)
        if self.health is not None and not self.health.healthy:
            raise CallRejected("INTERNAL", "app is not in a healthy state")
        if isinstance(self.app, GrpcAppChannel):
            started = time.perf_counter()
            response = await self._serve_grpc(self.app, request, body, caller, trace)
            return response, _NO_HTTP_CALL, (time.perf_counter() - started) * 1000
        try:
            call = prepare_app_call(
                request, verified_caller=caller, app_api_token=self.app_api_token
            )
            headers = app_headers_with_trace(call.headers, trace)
            started = time.perf_counter()
            response = await self.app.call(call.verb, call.target, headers, body)
        except InvalidMethod as exc:
            raise CallRejected("INVALID_ARGUMENT", str(exc)) from exc
        except (AppChannelError, StreamProtocolError, BodyReadError) as exc:
            raise CallRejected("INTERNAL", f"error invoking app channel: {exc}") from exc
        except BodyTooLarge as exc:
            # A peer streamed a body over our --max-body-size: its fault, not the app's.
            raise CallRejected("RESOURCE_EXHAUSTED", f"error invoking app channel: {exc}") from exc
        return response, call, (time.perf_counter() - started) * 1000

    async def _serve_grpc(
        self,
        app: GrpcAppChannel,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        caller: CallerIdentity | None,
        trace: TraceContext | None,
    ) -> AppResponse:
        """OnInvoke with the request's message (its data the whole body) and metadata as
        daprd's gRPC channel sends them; the app's status, whatever it is, is its answer."""
        try:
            method = normalize_method(request.message.method)
            data = await body.read_all(app.max_message_size)
        except InvalidMethod as exc:
            raise CallRejected("INVALID_ARGUMENT", str(exc)) from exc
        except (StreamProtocolError, BodyReadError) as exc:
            raise CallRejected("INTERNAL", f"error invoking app channel: {exc}") from exc
        except BodyTooLarge as exc:
            raise CallRejected("RESOURCE_EXHAUSTED", f"error invoking app channel: {exc}") from exc
        message = common_pb2.InvokeRequest()
        message.CopyFrom(request.message)
        message.method = method
        message.data.value = data
        carried = request.metadata
        metadata = app_metadata(
            {key: carried[key].values for key in carried},
            verified_caller=caller,
            app_api_token=self.app_api_token,
            trace=trace,
        )
        answer = await app.invoke(message, metadata)
        code = GRPC_CODE_NAMES.index(answer.code) if answer.code in GRPC_CODE_NAMES else 2
        data = answer.response.data.value if answer.response is not None else b""
        return AppResponse(code, answer.headers, Body(data), answer)

    def _check_access(
        self,
        access: AccessControl,
        request: internals_pb2.InternalInvokeRequest,
        caller: CallerIdentity | None,
    ) -> None:
        """Raise CallRejected (PERMISSION_DENIED) unless the policy lets ``caller`` in.

        Judged on the normalised method, the one the app is called with (and on its
        decoded reading, see ``AccessControl.judge``), so no spelling of a path
        (``%2F``, ``..``, ``%2e%2e``, ``//``) reaches a method the policy denies.
        """
        message = request.message
        try:
            method = normalize_method(message.method)
        except InvalidMethod as exc:
            raise CallRejected("INVALID_ARGUMENT", str(exc)) from exc
        # daprd judges (and names in its refusal) the verb the request carries: none
        # (NONE) without an HTTP extension. For a gRPC app only the operation counts.
        verb = (
            _VERB_NAMES.get(message.http_extension.verb, NO_VERB)
            if message.HasField("http_extension")
            else NO_VERB
        )
        refused = self.access_refusal(caller, method, verb, access.judge(caller, method, verb))
        if refused is not None:
            raise CallRejected("PERMISSION_DENIED", refused)

    def access_refusal(
        self, caller: CallerIdentity | None, operation: str, verb: str, decision: Decision
    ) -> str | None:
        """Count an access-control decision (``dapr_runtime_acl_*``); when it denies,
        the refusal's words, as daprd logs and answers them."""
        if self.metrics is not None:
            who = caller or CallerIdentity("", "")
            self.metrics.acl_decision(
                decision.by, decision.allowed, who.app_id, who.trust_domain, who.namespace
            )
        if decision.allowed:
            return None
        refused = denied_message(caller, operation, verb)
        log.debug("%s", refused)
        return refused


def _claimed_caller(request: internals_pb2.InternalInvokeRequest) -> str:
    """The caller's app ID as its sidecar claims it (used when mTLS is off)."""
    for key, value in request.metadata.items():
        if key.lower() == CALLER_APP_ID and value.values:
            return value.values[0]
    return "unknown"


def response_head(response: AppResponse) -> internals_pb2.InternalInvokeResponse:
    """The app's status and headers as Dapr carries them (body not included)."""
    head = internals_pb2.InternalInvokeResponse()
    fill_response_head(head, response)
    return head


def fill_response_head(head: internals_pb2.InternalInvokeResponse, response: AppResponse) -> None:
    """Write ``response_head(response)`` into an empty ``head`` in place (no copies:
    a frame's embedded response is filled where it lies)."""
    if response.grpc is not None:
        fill_grpc_head(head, response.grpc)
        return
    head.status.code = response.status
    carried = head.headers
    for key, values in response_metadata(response.headers).items():
        carried[key].values.extend(values)
    content_type = first_value(response.headers, b"content-type")
    message = head.message
    # Set even when empty: the message is present in Dapr's response.
    message.content_type = content_type.decode("latin-1") if content_type else ""
