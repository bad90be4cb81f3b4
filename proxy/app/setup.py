"""The app side of a sidecar, built from its settings: the app channel for
``--app-protocol`` (HTTP, or gRPC's AppCallback for grpc/grpcs), and with
``--enable-app-health-check`` the health state and its prober."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

from proxy.app.channel import HttpAppChannel
from proxy.app.health import (
    AppHealthProber,
    AppHealthState,
    HealthCheckSettings,
    HealthProbe,
    HttpHealthProbe,
)

if TYPE_CHECKING:
    from proxy.app.grpc_channel import GrpcAppChannel

# The gRPC app protocols, each with whether it is TLS (grpcs: not verified, as daprd).
GRPC_PROTOCOLS = {"grpc": False, "grpcs": True}
APP_PROTOCOLS = ("http", *GRPC_PROTOCOLS)

# The gRPC client loads only in sidecars whose app speaks gRPC (and not in the CLI).
AppChannel: TypeAlias = "HttpAppChannel | GrpcAppChannel"


class AppSettings(Protocol):
    """The sidecar settings the app side is made from (``SidecarSettings`` has them)."""

    @property
    def app_protocol(self) -> str: ...
    @property
    def app_channel_address(self) -> str: ...
    @property
    def app_max_concurrency(self) -> int: ...
    @property
    def app_health(self) -> HealthCheckSettings | None: ...
    @property
    def max_body_size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AppSide:
    channel: AppChannel
    health: AppHealthState | None
    prober: AppHealthProber | None


def build_app_side(settings: AppSettings, port: int) -> AppSide:
    """The channel to the app on ``port``; health probes get their own connection so
    a full ``--app-max-concurrency`` cannot make a busy app look dead."""
    address, health = settings.app_channel_address, settings.app_health
    limit = settings.app_max_concurrency
    channel: AppChannel
    probe: HealthProbe | None = None
    if settings.app_protocol in GRPC_PROTOCOLS:
        from proxy.app.grpc_channel import GrpcAppChannel

        tls = GRPC_PROTOCOLS[settings.app_protocol]
        size = settings.max_body_size
        channel = GrpcAppChannel(
            address, port, tls=tls, max_concurrency=limit, max_message_size=size
        )
        if health is not None:
            probe = GrpcAppChannel(address, port, tls=tls)
    else:
        channel = HttpAppChannel(address, port, limit)
        if health is not None:
            probe = HttpHealthProbe(HttpAppChannel(address, port, max_idle=1), health.path)
    if health is None or probe is None:
        return AppSide(channel, None, None)
    state = AppHealthState(health.threshold)
    return AppSide(channel, state, AppHealthProber(probe, health, state))
