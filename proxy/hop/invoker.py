"""The caller half of service invocation: an HTTP request for another app
becomes an ``InternalInvokeRequest`` sent to the target's sidecar (or, for
our own app ID, straight to the local app channel, as daprd does)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from certs.errors import InvalidSpiffeId
from certs.spiffe import SpiffeId
from proxy.core.body import Body, BodyTooLarge, close_body
from proxy.core.errors import CallRejected, InvalidAppId, InvocationFailed
from proxy.core.grpc_status import grpc_code_name
from proxy.discovery.resolver import ResolveError, Resolver
from proxy.edge import dapr_errors
from proxy.edge.http_server import HttpRequest, HttpResponse
from proxy.edge.routing import AppAddress, Route, split_app_id
from proxy.hop.callee import Callee
from proxy.hop.header_rules import (
    CallerIdentity,
    client_response_headers,
    outbound_metadata,
    strip_hop_by_hop,
)
from proxy.hop.internal_client import InternalClient
from proxy.observability.metrics import Metrics
from proxy.observability.spans import call_local_span_name, caller_span_attributes
from proxy.observability.trace_context import format_traceparent
from proxy.observability.trace_propagation import incoming_trace, propagate
from proxy.observability.tracer import Tracer
from proxy.protos import common_pb2, internals_pb2
from resiliency import (
    SUCCESS,
    TRANSPORT_FAILURE,
    AttemptTimedOut,
    BreakerRejected,
    DeadlineExceeded,
    Outcome,
    ResiliencyEngine,
)
from resiliency.lookup import AppPolicy

log = logging.getLogger("tether.invoke")

# tether extension (attemptHeader: true): lets the app see that a call is a retry.
ATTEMPT_HEADER = "tether-attempt"

# Verbs the HTTP extension names; anything else travels as POST (Dapr's rule).
_VERBS = frozenset(common_pb2.HTTPExtension.Verb.keys()) - {"NONE"}
# Connection-level failures after which the endpoint and channel are dropped.
_CONNECTION_CODES = frozenset({"UNAVAILABLE", "UNAUTHENTICATED"})


@dataclass(frozen=True, slots=True)
class Locality:
    identity: CallerIdentity
    trust_domain: str
    host_ip: str
    hostname: str


class Invoker:
    def __init__(
        self,
        locality: Locality,
        resolver: Resolver,
        client: InternalClient,
        callee: Callee,
        resiliency: ResiliencyEngine,
        replay_limit: int,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._here = locality
        self._resolver = resolver
        self._client = client
        self._callee = callee
        self._resiliency = resiliency
        # Largest failed response body held in memory while deciding on a retry.
        self._replay_limit = replay_limit

    async def invoke(self, route: Route, request: HttpRequest) -> HttpResponse:
        local = self._here.identity
        target_id = route.target_id
        try:
            target = split_app_id(target_id, local.namespace)
            peer = SpiffeId(self._here.trust_domain, target.namespace, target.app_id)
        except (InvalidAppId, InvalidSpiffeId) as exc:
            return HttpResponse.of(dapr_errors.direct_invoke_failed(target_id, str(exc)))
        message = self._internal_request(route, request, target.app_id)
        span = None
        if self._tracer is not None and self._tracer.enabled:
            span = self._tracer.start_client_span(
                call_local_span_name(target.app_id, route.method),
                incoming_trace(request.headers),
                caller_span_attributes(
                    target.app_id,
                    request.verb,
                    request.target.partition("?")[0],
                    headers=(
                        (n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers
                    ),
                ),
            )
            propagate(message, span.context)
        try:
            response = await self._invoke(route, request, target, peer, message)
        except BaseException:
            if span is not None:
                span.set_status_code(500)
                span.end()
            raise
        if span is not None:
            span.set_status_code(response.status)
            span.end()
            if span.context is not None:
                # Dapr answers the calling app with the trace context of its call.
                traceparent = format_traceparent(span.context).encode()
                response.headers = [h for h in response.headers if h[0] != b"traceparent"]
                response.headers.append((b"traceparent", traceparent))
        return response

    async def _invoke(
        self,
        route: Route,
        request: HttpRequest,
        target: AppAddress,
        peer: SpiffeId,
        message: internals_pb2.InternalInvokeRequest,
    ) -> HttpResponse:
        local = self._here.identity
        target_id = route.target_id
        body = request.body
        runner = self._resiliency.runner_for(
            target.app_id, route.method, streaming=not body.complete
        )
        policy = runner.policy
        attempt_header = policy.attempt_header
        attempts = 0

        def count_attempt(number: int) -> None:
            nonlocal attempts
            attempts = number

        async def send_once(attempt: int) -> _Answer:
            outgoing = message
            if attempt_header:
                outgoing = internals_pb2.InternalInvokeRequest()
                outgoing.CopyFrom(message)
                outgoing.metadata[ATTEMPT_HEADER].values.append(str(attempt))
            if target.app_id == local.app_id and target.namespace == local.namespace:
                answer = await self._send_local(outgoing, body)
            else:
                answer = await self._send_remote(
                    target.app_id,
                    target.namespace,
                    peer,
                    outgoing,
                    body,
                    timeout_policy=policy.timeout is not None,
                )
            if not _succeeded(answer.status) and not answer.body.complete:
                # A failed attempt may be retried and dropped: hold nothing open for it.
                try:
                    answer.body = Body(await answer.body.read_all(self._replay_limit))
                except BodyTooLarge:
                    await close_body(answer.body)
                    raise InvocationFailed(
                        "error response too large to buffer", "INTERNAL"
                    ) from None
            return answer

        async def send(attempt: int) -> _Answer:
            try:
                return await send_once(attempt)
            except asyncio.CancelledError:
                # Only the per-attempt timeout cancels an attempt from inside the runner.
                if policy.timeout is not None:
                    self._policy_fired("timeout", target.app_id)
                raise

        try:
            answer = await runner.run(
                send, _classify, errors=_classify_error, on_attempt=count_attempt
            )
        except BreakerRejected as exc:
            return HttpResponse.of(dapr_errors.direct_invoke_failed(target_id, str(exc)))
        except (AttemptTimedOut, DeadlineExceeded):
            return HttpResponse.of(
                dapr_errors.direct_invoke_failed(target_id, "context deadline exceeded")
            )
        except InvocationFailed as exc:
            status = 403 if exc.grpc_code == "PERMISSION_DENIED" else 500
            log.debug("invoke %s failed: %s %s", target_id, exc.grpc_code, exc)
            return HttpResponse.of(
                dapr_errors.direct_invoke_failed(target_id, _describe(exc), status)
            )
        except ResolveError as exc:
            return HttpResponse.of(dapr_errors.direct_invoke_failed(target_id, str(exc)))
        except CallRejected as exc:
            # For a broken request body the edge answers 400/413 in place of this.
            status = 400 if exc.code == "INVALID_ARGUMENT" else 500
            return HttpResponse.of(dapr_errors.direct_invoke_failed(target_id, str(exc), status))
        finally:
            if self._metrics is not None:
                self._count_policies(policy, target.app_id, retried=attempts > 1)
        return HttpResponse(answer.status, answer.headers, answer.body)

    def _resiliency_name(self) -> str:
        # Dapr labels with the resource that was loaded last.
        names = self._resiliency.config.resource_names
        return names[-1] if names else ""

    def _count_policies(self, policy: AppPolicy, app_id: str, *, retried: bool) -> None:
        """dapr_resiliency_count once per call per policy kind; a retry fires once per call."""
        metrics = self._metrics
        name = self._resiliency_name()
        if metrics is None or not name:
            return
        namespace, target = self._here.identity.namespace, f"app_{app_id}"
        for kind, present in (
            ("timeout", policy.timeout),
            ("retry", policy.retry),
            ("circuitbreaker", policy.circuit_breaker),
        ):
            if present is not None:
                metrics.resiliency_count(name, kind, namespace, "outbound", target)
        if retried and policy.retry is not None:
            metrics.resiliency_activation(name, "retry", namespace, "outbound", target)

    def _policy_fired(self, kind: str, app_id: str) -> None:
        name = self._resiliency_name()
        if self._metrics is not None and name:
            namespace = self._here.identity.namespace
            self._metrics.resiliency_activation(name, kind, namespace, "outbound", f"app_{app_id}")

    async def _send_remote(
        self,
        app_id: str,
        namespace: str,
        peer: SpiffeId,
        message: internals_pb2.InternalInvokeRequest,
        body: Body,
        *,
        timeout_policy: bool,
    ) -> _Answer:
        endpoint = await self._resolver.resolve(app_id, namespace)
        metrics = self._metrics
        streaming = not body.complete
        if metrics is not None:
            metrics.req_sent(app_id, streaming)
        started = time.perf_counter()
        try:
            remote = await self._client.invoke(
                endpoint, peer, message, body, timeout_policy=timeout_policy
            )
        except InvocationFailed as exc:
            if exc.grpc_code in _CONNECTION_CODES:
                self._resolver.evict(app_id, namespace, endpoint)
                self._client.discard(endpoint, peer)
            if metrics is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                metrics.res_recv(app_id, exc.grpc_code, streaming, latency_ms)
            raise
        except asyncio.CancelledError:
            if metrics is not None:  # the attempt's timeout fired
                latency_ms = (time.perf_counter() - started) * 1000
                metrics.res_recv(app_id, "DEADLINE_EXCEEDED", streaming, latency_ms)
            raise
        if metrics is not None:
            latency_ms = (time.perf_counter() - started) * 1000
            metrics.res_recv(app_id, str(remote.status), streaming, latency_ms)
            received = len(remote.body.head)
            metrics.grpc_client(remote.method, "OK", latency_ms, len(body.head), received)
        status = remote.status
        if status < 100:
            # A gRPC status from a gRPC app: Dapr's HTTPStatusFromCode.
            status = dapr_errors.http_status_from_grpc(grpc_code_name(status))
        return _Answer(
            status, client_response_headers(remote.headers, remote.content_type), remote.body
        )

    async def _send_local(
        self, message: internals_pb2.InternalInvokeRequest, body: Body
    ) -> _Answer:
        response = await self._callee.serve(message, body, self._here.identity)
        return _Answer(response.status, strip_hop_by_hop(response.headers), response.body)

    def _internal_request(
        self, route: Route, request: HttpRequest, callee_app_id: str
    ) -> internals_pb2.InternalInvokeRequest:
        here = self._here
        metadata = outbound_metadata(
            request.headers,
            caller=here.identity,
            callee_app_id=callee_app_id,
            host_ip=here.host_ip,
            hostname=here.hostname,
            drop=route.id_header,
        )
        body = request.body
        if "Content-Length" not in metadata and body.complete:
            # Lets the callee see at once that the first message holds the whole body.
            metadata["Content-Length"] = [str(len(body.head))]
        content_type = ""
        for name, value in request.headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break
        return internals_pb2.InternalInvokeRequest(
            ver=internals_pb2.V1,
            metadata={k: internals_pb2.ListStringValue(values=v) for k, v in metadata.items()},
            message=common_pb2.InvokeRequest(
                method=route.method,
                content_type=content_type,
                http_extension=common_pb2.HTTPExtension(
                    verb=request.verb if request.verb in _VERBS else "POST",
                    querystring=route.query,
                ),
            ),
        )


@dataclass(slots=True)
class _Answer:
    """One attempt's answer, from the local app or a remote sidecar, in client terms."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: Body


def _succeeded(status: int) -> bool:
    # Dapr's HTTP invoke treats anything below 200 or above 399 as a failed call.
    return 200 <= status <= 399


def _classify(answer: _Answer) -> Outcome:
    if _succeeded(answer.status):
        return SUCCESS
    retry_after = None
    if answer.status in (429, 503):
        retry_after = _retry_after(answer.headers)
    return Outcome(False, code=answer.status, retry_after=retry_after)


def _retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name == b"retry-after":
            text = value.strip()
            return float(text) if text.isdigit() else None  # HTTP-dates are not honoured
    return None


def _classify_error(exc: Exception) -> Outcome | None:
    """How an attempt that raised counts: Dapr retries every non-code error."""
    if isinstance(exc, InvocationFailed):
        if exc.grpc_code in ("PERMISSION_DENIED", "CANCELLED", "INVALID_ARGUMENT"):
            return PERMANENT_FAILURE  # an ACL refusal, or the caller's own body broke
        if exc.grpc_code in _CONNECTION_CODES:
            return CONNECTION_FAILURE
        return TRANSPORT_FAILURE
    if isinstance(exc, CallRejected):
        return PERMANENT_FAILURE if exc.code == "INVALID_ARGUMENT" else TRANSPORT_FAILURE
    if isinstance(exc, ResolveError):
        return TRANSPORT_FAILURE
    return None


PERMANENT_FAILURE = Outcome(False, permanent=True)
CONNECTION_FAILURE = Outcome(False, connection_failure=True)


def _describe(exc: InvocationFailed) -> str:
    return f"rpc error: code = {exc.grpc_code.title().replace('_', '')} desc = {exc}"
