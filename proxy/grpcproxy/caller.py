"""The caller half of gRPC proxying: a call on the Dapr gRPC API port to any method,
with metadata ``dapr-app-id``, relayed to the target's sidecar (or, for our own app
ID, straight to our app) under the target's resiliency policies.

A retry sends the caller's messages again, so it happens only while they are all
kept (``replay_limit``) and nothing of the answer reached the caller. Without
``dapr-stream: true`` the policy covers the whole call (its timeout included), as
daprd's does; with it, only the stream's set-up (until the response headers)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certs.errors import InvalidSpiffeId
from certs.spiffe import SpiffeId
from proxy.core.app_address import AppAddress, split_app_id
from proxy.core.errors import InvalidAppId, InvocationFailed
from proxy.core.grpc_status import GRPC_CODE_NAMES
from proxy.discovery.resolver import AppNotFoundError, Resolver
from proxy.grpcproxy import metadata as md
from proxy.grpcproxy.callee import AppRelay, AppUnusable
from proxy.grpcproxy.relay import (
    Requests,
    Sent,
    answer,
    end,
    end_span,
    settled,
    start_feeding,
    stop,
)
from proxy.grpcwire.client import ClientStream, RpcError, Status
from proxy.grpcwire.handlers import RpcMethod, raw_stream_stream
from proxy.grpcwire.server_call import ServerCall
from proxy.hop.internal_client import InternalClient
from proxy.hop.outcomes import (
    CALL_FAILURES,
    CONNECTION_CODES,
    PERMANENT_FAILURE,
    CallFailure,
    classify_error,
)
from proxy.observability.spans import call_local_span_name, caller_span_attributes
from proxy.observability.trace_context import format_traceparent
from proxy.observability.trace_propagation import incoming_trace
from proxy.observability.tracer import SpanHandle, Tracer
from resiliency import SUCCESS, AttemptTimedOut, DeadlineExceeded, Outcome, ResiliencyEngine

if TYPE_CHECKING:
    from proxy.observability.metrics import Metrics

# Methods of Dapr's own API are never proxied: daprd serves (or refuses) them itself.
DAPR_SERVICE_PREFIX = b"/dapr.proto.runtime.v1.Dapr/"


@dataclass(frozen=True, slots=True)
class Here:
    app_id: str
    namespace: str
    trust_domain: str


class _Unrepeatable(Exception):
    """An attempt ended (its policy timeout) after the answer began to reach the caller,
    or after more was sent than can be kept: no other attempt may follow."""


def _judge_error(exc: Exception) -> Outcome | None:
    return PERMANENT_FAILURE if isinstance(exc, _Unrepeatable) else classify_error(exc)


@dataclass(slots=True)
class _Attempt:
    stream: ClientStream
    writer: asyncio.Task[None] | None
    status: Status | None  # None: a stream set up (dapr-stream), its answer still to relay


class CallerRelay:
    def __init__(
        self,
        here: Here,
        resolver: Resolver,
        client: InternalClient,
        resiliency: ResiliencyEngine,
        local: AppRelay,
        *,
        api_token: str | None,
        replay_limit: int,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._here = here
        self._resolver = resolver
        self._client = client
        self._resiliency = resiliency
        self._local = local
        self._token = api_token.encode("utf-8") if api_token else None
        self._replay_limit = replay_limit
        self._tracer = tracer
        self._metrics = metrics
        self._method = raw_stream_stream(self._serve)

    def method_for(self, path: bytes, headers: list[tuple[bytes, bytes]]) -> RpcMethod | None:
        """The relay for a call the API port does not serve itself; None: not proxied."""
        if path.startswith(DAPR_SERVICE_PREFIX) or md.target_app_id(headers) is None:
            return None
        return self._method

    async def _serve(self, requests_call: ServerCall, call: ServerCall) -> None:
        headers = call.request_headers
        problem = md.token_problem(headers, self._token)
        if problem is not None:
            call.abort("UNAUTHENTICATED", problem)
        path = (md.first(headers, b":path") or b"").decode("utf-8", "replace")
        target_id = md.target_app_id(headers) or ""
        here = self._here
        try:
            target = split_app_id(target_id, here.namespace)
            peer = SpiffeId(here.trust_domain, target.namespace, target.app_id)
        except (InvalidAppId, InvalidSpiffeId) as exc:
            call.abort("INVALID_ARGUMENT", f"failed to proxy request to app {target_id}: {exc}")
        outgoing = md.to_peer(headers, md.Identity(here.app_id, here.namespace), target.app_id)
        span = self._start_span(target.app_id, path, headers)
        if span is not None and span.context is not None:
            outgoing = md.with_trace(
                outgoing, format_traceparent(span.context), span.context.tracestate
            )
        started = time.perf_counter()

        def done(code: str) -> None:
            if self._metrics is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                # What the app's side sent and answered is what our caller did.
                self._metrics.grpc_client(
                    path, code, latency_ms, call.received_bytes, call.sent_bytes
                )
            end_span(span, code)

        relayed = self._relay(call, path, target, peer, outgoing, md.is_stream(headers))
        await settled(relayed, done)

    def _start_span(
        self, app_id: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> SpanHandle | None:
        if self._tracer is None or not self._tracer.enabled:
            return None
        shown = ((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers if n[:1] != b":")
        attributes = caller_span_attributes(app_id, "POST", path, headers=shown)
        attributes["dapr.protocol"] = "grpc"
        attributes["dapr.api"] = path
        return self._tracer.start_client_span(
            call_local_span_name(app_id, path.lstrip("/")), incoming_trace(headers), attributes
        )

    async def _relay(
        self,
        call: ServerCall,
        path: str,
        target: AppAddress,
        peer: SpiffeId,
        outgoing: md.Headers,
        stream_mode: bool,
    ) -> str:
        here = self._here
        local = target.app_id == here.app_id and target.namespace == here.namespace
        runner = self._resiliency.runner_for(target.app_id, path)
        retry = runner.policy.retry
        # Held response headers only matter when a policy may retry an answered attempt.
        hold = not stream_mode and retry is not None and retry.has_retries
        sent = Sent()
        requests = Requests(call, self._replay_limit, sent)
        # The app learns the policy's timeout too, when it bounds the whole call.
        policy_timeout = runner.policy.timeout
        attempt_limit = None if stream_mode or not policy_timeout else policy_timeout.per_attempt

        tries = 0

        async def attempt(number: int) -> _Attempt:
            nonlocal tries
            tries += 1  # the built-in retries repeat an attempt number
            if tries > 1 and (sent.anything or not requests.replayable):
                raise _Unrepeatable()
            timeout = _earliest(call.time_remaining(), attempt_limit)
            if local:
                verified = md.Identity(here.app_id, here.namespace)
                stream = await self._open_local(path, outgoing, verified, timeout)
            else:
                stream = await self._open_remote(target, peer, path, outgoing, timeout)
            writer = start_feeding(requests, stream)
            status: Status | None = None
            try:
                if stream_mode:
                    await stream.initial_metadata()
                    if stream.done:
                        status = await stream.status()
                else:
                    status = await answer(stream, call, sent, hold=hold)
            except BaseException:
                stop(stream, writer)
                raise
            if status is not None:
                # Over: its feeder must not read on beside the next attempt's.
                stop(stream, writer)
                if status.refused and not sent.anything:
                    raise InvocationFailed(status.message, status.code, maybe_delivered=False)
            return _Attempt(stream, writer, status)

        def classify(result: _Attempt) -> Outcome:
            status = result.status
            if status is None or status.ok:
                return SUCCESS
            number = md.status_code(result.stream.trailers)
            if number is None:
                number = GRPC_CODE_NAMES.index(status.code)
            return Outcome(False, code=number, permanent=sent.anything or not requests.replayable)

        try:
            result = await runner.run(attempt, classify, errors=_judge_error)
        except CALL_FAILURES as exc:
            code, message = failure_status(target.app_id, exc)
            call.abort(code, message)
        except _Unrepeatable:
            call.abort(
                "DEADLINE_EXCEEDED",
                f"failed to proxy request to app {target.app_id}: context deadline exceeded",
            )
        stream, writer, status = result.stream, result.writer, result.status
        requests.forget()  # the last attempt: from here on, messages only pass through
        try:
            if status is None:
                status = await answer(stream, call, sent, hold=False)
            end(call, stream, status)
            return status.code
        finally:
            stop(stream, writer)

    async def _open_local(
        self, path: str, outgoing: md.Headers, verified: md.Identity, timeout: float | None
    ) -> ClientStream:
        # Our own app: no hop, no access control (as for HTTP, and as daprd does).
        try:
            return await self._local.open(
                path, self._local.app_metadata(outgoing, verified), timeout
            )
        except AppUnusable as exc:
            raise InvocationFailed(str(exc), exc.code, maybe_delivered=False) from exc
        except RpcError as exc:
            raise InvocationFailed(exc.message, exc.code, maybe_delivered=not exc.refused) from exc

    async def _open_remote(
        self,
        target: AppAddress,
        peer: SpiffeId,
        path: str,
        outgoing: md.Headers,
        timeout: float | None,
    ) -> ClientStream:
        resolver = self._resolver
        endpoint = await resolver.resolve(target.app_id, target.namespace)
        if self._metrics is not None:
            self._metrics.req_sent(target.app_id, streaming=True)
        resolver.started(target.app_id, target.namespace, endpoint)
        started = time.perf_counter()
        reachable = True
        try:
            return await self._client.channel_to(endpoint, peer).open(path, outgoing, timeout)
        except RpcError as exc:
            if exc.code in CONNECTION_CODES:
                reachable = False
                self._client.discard(endpoint, peer)
            raise InvocationFailed(exc.message, exc.code, maybe_delivered=not exc.refused) from exc
        finally:
            latency = time.perf_counter() - started
            resolver.finished(target.app_id, target.namespace, endpoint, latency, reachable)


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    return first if second is None else min(first, second)


def failure_status(app_id: str, exc: CallFailure) -> tuple[str, str]:
    """The status a caller gets when its call failed before an answer (pure)."""
    prefix = f"failed to proxy request to app {app_id}"
    if isinstance(exc, (AttemptTimedOut, DeadlineExceeded)):
        return "DEADLINE_EXCEEDED", f"{prefix}: context deadline exceeded"
    if isinstance(exc, InvocationFailed):
        return exc.grpc_code, f"{prefix}: {exc}"
    if isinstance(exc, AppNotFoundError):
        return "UNAVAILABLE", f"{prefix}: app not found: {exc}"
    return "UNAVAILABLE", f"{prefix}: {exc}"
