"""The caller half of service invocation: an ``Invocation`` for another app is
sent to the target's sidecar (or, for our own app ID, straight to the local app
channel, as daprd does) under the resiliency policies, with its span and metrics.
Failures leave as ``InvokeError``; the edge decides how they look."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from certs.errors import InvalidSpiffeId
from certs.spiffe import SpiffeId
from proxy.core.app_address import AppAddress, split_app_id
from proxy.core.body import Body, BodyTooLarge, close_body
from proxy.core.errors import InvalidAppId, InvocationFailed
from proxy.discovery.resolver import Resolver
from proxy.hop.call import Answer, Invocation, InvokeError, InvokeMalformed
from proxy.hop.callee import Callee, response_head
from proxy.hop.grpc_answer import grpc_answer
from proxy.hop.header_rules import client_response_headers, strip_hop_by_hop
from proxy.hop.internal_client import HopRpc, InternalClient, RemoteResponse
from proxy.hop.outcomes import (
    CALL_FAILURES,
    CONNECTION_CODES,
    classify,
    classify_error,
    classify_status,
    invoke_error,
    succeeded,
)
from proxy.hop.policy_metrics import PolicyMetrics
from proxy.hop.request_builder import Locality, internal_request, with_attempt
from proxy.observability.spans import (
    call_local_span_name,
    caller_span_attributes,
    peer_attributes,
)
from proxy.observability.trace_context import format_traceparent
from proxy.observability.trace_propagation import incoming_trace, propagate
from proxy.observability.tracer import SpanHandle, Tracer
from proxy.protos import internals_pb2
from resiliency import ResiliencyEngine

if TYPE_CHECKING:
    # Types only: prometheus_client loads when metrics are on, not in every sidecar.
    from proxy.observability.metrics import Metrics

log = logging.getLogger("tether.invoke")

# How many distinct target ids keep their parsed form.
_TARGETS_KEPT = 1024


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
        self._policy_metrics = (
            PolicyMetrics(metrics, resiliency, locality.identity.namespace)
            if metrics is not None
            else None
        )
        self._tracer = tracer
        self._here = locality
        self._resolver = resolver
        self._client = client
        self._callee = callee
        self._resiliency = resiliency
        # Largest failed response body held in memory while deciding on a retry.
        self._replay_limit = replay_limit
        # Target ids already parsed and checked (an id's meaning never changes).
        self._targets: dict[str, tuple[AppAddress, SpiffeId]] = {}

    async def invoke(self, call: Invocation) -> Answer:
        """The target app's answer; raises InvokeError when the call failed before it."""
        target, peer = self._target(call.target_id)
        message = internal_request(call, target.app_id, self._here)
        span = self._start_span(call, target.app_id, message)
        if span is None:
            return await self._invoke(call, target, peer, message, None)
        try:
            answer = await self._invoke(call, target, peer, message, span)
        except InvokeError as exc:
            exc.traceparent = _end_span(span, exc.http_status)
            raise
        except BaseException:
            _end_span(span, 500)
            raise
        traceparent = _end_span(span, answer.status)
        if traceparent is not None:
            # Dapr answers the calling app with the trace context of its call.
            answer.headers = [h for h in answer.headers if h[0] != b"traceparent"]
            answer.headers.append((b"traceparent", traceparent.encode()))
        return answer

    def _target(self, target_id: str) -> tuple[AppAddress, SpiffeId]:
        """The app a target id names and its sidecar's identity, checked once per id."""
        known = self._targets.get(target_id)
        if known is not None:
            return known
        try:
            target = split_app_id(target_id, self._here.identity.namespace)
            peer = SpiffeId(self._here.trust_domain, target.namespace, target.app_id)
        except (InvalidAppId, InvalidSpiffeId) as exc:
            raise InvokeError(target_id, str(exc)) from exc
        if len(self._targets) >= _TARGETS_KEPT:
            self._targets.clear()  # callers naming ever new apps: start over, stay bounded
        self._targets[target_id] = (target, peer)
        return target, peer

    def _start_span(
        self, call: Invocation, app_id: str, message: internals_pb2.InternalInvokeRequest
    ) -> SpanHandle | None:
        if self._tracer is None or not self._tracer.enabled:
            return None
        span = self._tracer.start_client_span(
            call_local_span_name(app_id, call.method),
            incoming_trace(call.headers),
            caller_span_attributes(
                app_id,
                call.verb,
                call.path,
                headers=((n.decode("latin-1"), v.decode("latin-1")) for n, v in call.headers),
            ),
        )
        propagate(message, span.context)
        return span

    async def _invoke(
        self,
        call: Invocation,
        target: AppAddress,
        peer: SpiffeId,
        message: internals_pb2.InternalInvokeRequest,
        span: SpanHandle | None,
    ) -> Answer:
        local = self._here.identity
        is_local = target.app_id == local.app_id and target.namespace == local.namespace
        body = call.body
        runner = self._resiliency.runner_for(
            target.app_id, call.method, streaming=not body.complete
        )
        policy = runner.policy
        # Only the per-attempt timeout cancels an attempt from inside the runner.
        cancelled_as = "DEADLINE_EXCEEDED" if policy.timeout is not None else "CANCELLED"
        attempts = 0

        def count_attempt(number: int) -> None:
            nonlocal attempts
            attempts = number

        async def send_once(attempt: int) -> Answer:
            outgoing = with_attempt(message, attempt) if policy.attempt_header else message
            if is_local:
                answer = await self._send_local(outgoing, body)
            else:
                answer = await self._send_remote(
                    target,
                    peer,
                    outgoing,
                    body,
                    cancelled_as,
                    timeout_policy=policy.timeout is not None,
                    span=span,
                )
            if not succeeded(answer.status) and not answer.body.complete:
                # A failed attempt may be retried and dropped: hold nothing open for it.
                try:
                    answer.body = Body(await answer.body.read_all(self._replay_limit))
                except BodyTooLarge:
                    await close_body(answer.body)
                    raise InvocationFailed(
                        "error response too large to buffer", "INTERNAL"
                    ) from None
            return answer

        async def send(attempt: int) -> Answer:
            try:
                return await send_once(attempt)
            except asyncio.CancelledError:
                if self._policy_metrics is not None:
                    self._policy_metrics.fired("timeout", target.app_id)
                raise

        # Without a timeout policy nothing is counted on cancellation: one frame less.
        operation = send if policy.timeout is not None else send_once
        try:
            return await runner.run(
                operation,
                classify_status if call.grpc_api else classify,
                errors=classify_error,
                on_attempt=count_attempt,
            )
        except CALL_FAILURES as exc:
            if isinstance(exc, InvocationFailed):
                log.debug("invoke %s failed: %s %s", call.target_id, exc.grpc_code, exc)
            raise invoke_error(call.target_id, exc) from exc
        finally:
            if self._policy_metrics is not None:
                self._policy_metrics.applied(policy, target.app_id, retried=attempts > 1)

    async def _send_remote(
        self,
        target: AppAddress,
        peer: SpiffeId,
        message: internals_pb2.InternalInvokeRequest,
        body: Body,
        cancelled_as: str,
        *,
        timeout_policy: bool,
        span: SpanHandle | None,
    ) -> Answer:
        app_id, namespace = target.app_id, target.namespace
        resolver = self._resolver
        endpoint = await resolver.resolve(app_id, namespace)
        if span is not None:
            # The instance chosen for this attempt (the last one when retried).
            span.set_attributes(peer_attributes(endpoint.host, endpoint.port))
        if self._metrics is not None:
            self._metrics.req_sent(app_id, streaming=not body.complete)
        rpc = HopRpc()
        resolver.started(app_id, namespace, endpoint)
        started = time.perf_counter()
        # Until the response headers (or the failure): a streamed body's tail is the
        # app's time, not the instance's.
        reachable = True
        try:
            remote = await self._client.invoke(
                endpoint, peer, message, body, timeout_policy=timeout_policy, rpc=rpc
            )
        except InvocationFailed as exc:
            if exc.grpc_code in CONNECTION_CODES:
                reachable = False
                self._client.discard(endpoint, peer)
            self._count_hop(app_id, rpc, body, started, exc.grpc_code)
            raise
        except asyncio.CancelledError:
            self._count_hop(app_id, rpc, body, started, cancelled_as)
            raise
        finally:
            latency = time.perf_counter() - started
            resolver.finished(app_id, namespace, endpoint, latency, reachable)
        self._count_hop(app_id, rpc, body, started, "OK", remote)
        if remote.grpc_head is not None:
            return await _grpc_answer(remote.grpc_head, remote.body, app_id)
        return Answer(
            remote.status,
            client_response_headers(remote.headers, remote.content_type),
            remote.body,
        )

    def _count_hop(
        self,
        app_id: str,
        rpc: HopRpc,
        body: Body,
        started: float,
        rpc_status: str,
        remote: RemoteResponse | None = None,
    ) -> None:
        """One hop to a peer sidecar, answered (``remote``) or failed with ``rpc_status``.

        Dapr's service invocation metrics label a failed hop with its gRPC code and an
        answered one with the app's status; the RPC metrics carry the gRPC status."""
        metrics = self._metrics
        if metrics is None:
            return
        latency_ms = (time.perf_counter() - started) * 1000
        streaming = not body.complete
        status = str(remote.status) if remote is not None else rpc_status
        metrics.res_recv(app_id, status, streaming, latency_ms)
        received = len(remote.body.head) if remote is not None else 0
        metrics.grpc_client(rpc.method, rpc_status, latency_ms, len(body.head), received)

    async def _send_local(self, message: internals_pb2.InternalInvokeRequest, body: Body) -> Answer:
        response = await self._callee.serve(message, body, self._here.identity, local=True)
        if response.grpc is not None:
            # The same answer a remote caller would get: through Dapr's response head.
            here = self._here.identity.app_id
            return await _grpc_answer(response_head(response), response.body, here)
        return Answer(response.status, strip_hop_by_hop(response.headers), response.body)


async def _grpc_answer(
    head: internals_pb2.InternalInvokeResponse, body: Body, target_id: str
) -> Answer:
    """A gRPC app's answer for the caller; a body the mapping replaced is closed."""
    try:
        answer = grpc_answer(head, body, target_id)
    except InvokeMalformed:
        await close_body(body)
        raise
    if answer.body is not body:
        await close_body(body)
    return answer


def _end_span(span: SpanHandle, status: int) -> str | None:
    """End the caller span; return the traceparent to hand back to the caller."""
    span.set_status_code(status)
    span.end()
    return format_traceparent(span.context) if span.context is not None else None
