"""Wiring of the Dapr gRPC API port and of gRPC proxying (``proxy.grpcproxy``) from a
sidecar's settings and parts: the callee relay (the internal server's unknown methods,
to the local app's gRPC server) and the caller relay (the API port's calls with
``dapr-app-id``). The API's modules load only when its port is on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from proxy.app.grpc_channel import APP_KEEPALIVE
from proxy.config.settings import SidecarSettings
from proxy.discovery.resolver import Resolver
from proxy.edge.http_server import HttpLimits
from proxy.grpcproxy.callee import AppRelay, LocalApp
from proxy.grpcproxy.caller import CallerRelay, Here
from proxy.grpcwire.client import ClientSettings
from proxy.hop.call import Answer, Invocation
from proxy.hop.internal_client import InternalClient
from proxy.observability.tracer import Tracer
from resiliency import ResiliencyEngine

if TYPE_CHECKING:
    from proxy.grpcwire.server import GrpcServer
    from proxy.observability.metrics import Metrics


def app_relay(
    settings: SidecarSettings,
    message_limit: Callable[[SidecarSettings], int],
    metrics: Metrics | None,
    tracer: Tracer,
) -> AppRelay:
    """Proxied calls to this sidecar's app (its gRPC server at --app-port); it judges
    calls as the sidecar's ``Callee`` once that is built (``AppRelay.judge_as``)."""
    s = settings
    app = LocalApp(
        s.app_id,
        s.namespace,
        s.app_protocol,
        s.app_channel_address,
        s.app_port,
        s.app_api_token,
    )
    client = ClientSettings(message_limit(settings), keepalive_time=APP_KEEPALIVE)
    return AppRelay(app, client, metrics, tracer)


def caller_relay(
    settings: SidecarSettings,
    resolver: Resolver,
    client: InternalClient,
    resiliency: ResiliencyEngine,
    local: AppRelay,
    tracer: Tracer,
    metrics: Metrics | None,
) -> CallerRelay:
    """Calls on the Dapr gRPC API port with ``dapr-app-id``, to the target's sidecar."""
    s = settings
    return CallerRelay(
        Here(s.app_id, s.namespace, s.trust_domain),
        resolver,
        client,
        resiliency,
        local,
        api_token=s.api_token,
        replay_limit=HttpLimits().replay_buffer_size,
        tracer=tracer,
        metrics=metrics,
    )


async def start_dapr_api(
    settings: SidecarSettings,
    invoke: Callable[[Invocation], Awaitable[Answer]],
    parts: tuple[Resolver | None, InternalClient | None, ResiliencyEngine | None, AppRelay, Tracer],
    max_message_size: int,
    health_checked: bool,
    metrics: Metrics | None,
) -> GrpcServer:
    """The Dapr gRPC API on --dapr-grpc-port, with proxying of every other method
    (``parts``: what the caller relay uses, built by then)."""
    from proxy.daprapi.server import Listener, listen_dapr_api
    from proxy.daprapi.service import DaprApi, app_connection_properties

    s = settings
    resolver, client, resiliency, local, tracer = parts
    assert resolver is not None and client is not None and resiliency is not None
    app = (s.app_port, s.app_protocol, s.app_channel_address, s.app_max_concurrency)
    properties = app_connection_properties(*app, s.app_health if health_checked else None)
    api = DaprApi(s.app_id, invoke, s.api_token, s.max_body_size, properties)
    limits = (max_message_size, s.max_connections, s.reuse_port)
    listener = Listener(s.listen_addresses, s.grpc_port or 0, *limits)
    relay = caller_relay(s, resolver, client, resiliency, local, tracer, metrics)
    record = metrics.grpc_server if metrics is not None else None
    return await listen_dapr_api(api, listener, relay.method_for, record)
