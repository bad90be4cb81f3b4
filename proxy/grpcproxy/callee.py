"""The callee half of gRPC proxying: a call on the internal port for a method the
port does not serve, carrying ``dapr-callee-app-id`` (or ``dapr-app-id``), is judged
by access control (operation = the full method, gRPC mode) and relayed to the local
app's own gRPC server, both ways, message by message."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.grpcproxy import metadata as md
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
from proxy.grpcwire.client import Channel, ClientSettings, ClientStream, RpcError
from proxy.grpcwire.handlers import RpcMethod, raw_stream_stream
from proxy.grpcwire.server_call import ServerCall
from proxy.hop.access_control import NO_VERB
from proxy.hop.callee import Callee
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.wire import peer_identity
from proxy.observability.spans import call_local_span_name, callee_span_attributes
from proxy.observability.trace_context import TraceContext, format_traceparent
from proxy.observability.trace_propagation import incoming_trace
from proxy.observability.tracer import Tracer

if TYPE_CHECKING:
    from proxy.observability.metrics import Metrics


GRPC_PROTOCOLS = frozenset({"grpc", "grpcs"})


class AppUnusable(Exception):
    """The local app cannot take proxied gRPC calls; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class LocalApp:
    app_id: str
    namespace: str
    protocol: str  # --app-protocol
    host: str
    port: int | None
    app_token: str | None  # APP_API_TOKEN, sent to the app as dapr-api-token


def _insecure_tls() -> ssl.SSLContext:
    # grpcs: TLS towards the app without verifying it, as daprd does.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


class AppRelay:
    """Proxied calls to the local app, from a peer sidecar or from our own app."""

    def __init__(
        self,
        app: LocalApp,
        settings: ClientSettings,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._app = app
        # The sidecar's Callee, for its access control and app health (judge_as).
        self._callee: Callee | None = None
        self._metrics = metrics
        self._tracer = tracer
        self._channel: Channel | None = None
        if app.port is not None and app.protocol in GRPC_PROTOCOLS:
            tls = _insecure_tls() if app.protocol == "grpcs" else None
            self._channel = Channel(app.host, app.port, settings, tls)
        self._method = raw_stream_stream(self._serve)

    def judge_as(self, callee: Callee) -> None:
        """Access control and app health as the callee applies them to invocations."""
        self._callee = callee

    def unknown_method(
        self, path: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, str] | RpcMethod:
        """The internal server's answer to a method it does not host."""
        if md.callee_app_id(headers) is None:
            return ("UNIMPLEMENTED", f"Method not found: {path.decode('utf-8', 'replace')}")
        return self._method

    async def open(self, path: str, headers: md.Headers, timeout: float | None) -> ClientStream:
        """A call to the app's method ``path``. Raises AppUnusable, or RpcError when the
        app cannot be reached."""
        app = self._app
        if app.port is None:
            raise AppUnusable(
                "UNAVAILABLE", f"app {app.app_id} has no app port: nothing to proxy the call to"
            )
        health = self._callee.health if self._callee is not None else None
        if health is not None and not health.healthy:
            raise AppUnusable("INTERNAL", "app is not in a healthy state")
        if self._channel is None:
            raise AppUnusable(
                "UNIMPLEMENTED",
                f"app {app.app_id} uses --app-protocol {app.protocol}: gRPC proxying needs"
                " an app with --app-protocol grpc or grpcs",
            )
        return await self._channel.open(path, headers, timeout)

    def app_metadata(self, headers: md.Headers, verified: md.Identity | None) -> md.Headers:
        return md.to_app(headers, verified, self._app.app_token)

    async def _serve(self, requests_call: ServerCall, call: ServerCall) -> None:
        started = time.perf_counter()
        path = _path(call)
        span = None
        if self._tracer is not None and self._tracer.enabled:
            span = self._tracer.start_server_span(
                call_local_span_name(self._app.app_id, path.lstrip("/")),
                incoming_trace(call.request_headers),
                callee_span_attributes(path, api=path),
            )

        def done(code: str) -> None:
            if self._metrics is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                self._metrics.grpc_server(
                    path, code, latency_ms, call.received_bytes, call.sent_bytes
                )
            end_span(span, code)

        await settled(self._relay(call, path, span.context if span is not None else None), done)

    async def _relay(self, call: ServerCall, path: str, trace: TraceContext | None) -> str:
        headers = call.request_headers
        app = self._app
        target = md.callee_app_id(headers)
        if target not in (app.app_id, f"{app.app_id}.{app.namespace}"):
            call.abort(
                "NOT_FOUND",
                f"proxied call for app {target} reached the sidecar of {app.app_id}",
            )
        caller = peer_identity(call)
        self._check_access(caller, path, call)
        verified = md.Identity(caller.app_id, caller.namespace) if caller is not None else None
        try:
            metadata = self.app_metadata(headers, verified)
            if trace is not None:
                metadata = md.with_trace(metadata, format_traceparent(trace), trace.tracestate)
            stream = await self.open(path, metadata, call.time_remaining())
        except AppUnusable as exc:
            call.abort(exc.code, str(exc))
        except RpcError as exc:
            call.abort(exc.code, f"failed to proxy request to app {app.app_id}: {exc.message}")
        writer = start_feeding(Requests(call, 0), stream)
        try:
            status = await answer(stream, call, Sent(), hold=False)
            end(call, stream, status)
            return status.code
        finally:
            stop(stream, writer)

    def _check_access(self, caller: CallerIdentity | None, path: str, call: ServerCall) -> None:
        callee = self._callee
        if callee is None or callee.access_control is None:
            return
        # The full method as gRPC servers route it: never percent-decoded.
        decision = callee.access_control.check(caller, path, NO_VERB)
        refused = callee.access_refusal(caller, path, NO_VERB, decision)
        if refused is not None:
            call.abort("PERMISSION_DENIED", refused)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


def _path(call: ServerCall) -> str:
    return (md.first(call.request_headers, b":path") or b"").decode("utf-8", "replace")
