"""The sidecar's validated, frozen settings, built in one place from flags,
environment and the Configuration file. Precedence: flags > environment >
YAML > defaults."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from certs.errors import InvalidSpiffeId
from certs.spiffe import validate_app_id, validate_namespace
from proxy.app.health import HealthCheckSettings
from proxy.config.configuration import MetricConfig
from proxy.config.name_resolution import NameResolutionSettings
from proxy.config.sentry_settings import SentrySettings
from proxy.core.access_policy import AccessControlSpec
from proxy.core.errors import UsageError
from proxy.discovery.registry import default_registry_path
from proxy.observability.tracing_settings import TracingSettings
from yamlcheck import DurationError, parse_go_duration

if TYPE_CHECKING:  # the sidecar loads discovery's sources; the CLI need not
    from proxy.discovery.sources import Announcement

DEFAULT_TRUST_DOMAIN = "public"
_SIZE = re.compile(r"^\s*(\d+)\s*(Ki|Mi|Gi|k|K|M|G|B)?\s*$")
# --workers above this is a mistake, not a machine: each worker is a whole sidecar (~50 MB).
MAX_WORKERS = 64
_UNITS = {None: 1, "B": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}  # fmt: skip


@dataclass(frozen=True)
class WorkerRole:
    """What one worker of ``--workers N`` (N > 1) is told beside the shared settings."""

    index: int  # 0 .. N-1; worker 0 alone announces on mDNS
    # The workers are one instance to other sidecars: one registry row (each worker
    # heartbeats it, so it lives while any does) and one mDNS name (the supervisor's pid,
    # as daprd names its instance by its own pid).
    registration_id: str
    supervisor_pid: int


@dataclass(frozen=True)
class SidecarSettings:
    app_id: str
    app_port: int | None = None
    app_protocol: str = "http"
    app_channel_address: str = "127.0.0.1"
    app_max_concurrency: int = -1
    http_port: int = 3500
    # The Dapr gRPC API (--dapr-grpc-port, daprd's 50001); None: not served.
    grpc_port: int | None = None
    listen_addresses: tuple[str, ...] = ("127.0.0.1",)
    internal_grpc_port: int = 0  # 0: a free port, recorded in the registry
    internal_listen_address: str = "127.0.0.1"
    host_ip: str = "127.0.0.1"
    hostname: str = "localhost"
    namespace: str = "default"
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    resources_paths: tuple[Path, ...] = ()
    config_path: Path | None = None
    enable_mtls: bool = False
    certs_dir: Path = field(default_factory=lambda: Path("~/.tether/certs").expanduser())
    # --sentry-address and its environment: certificates from a Sentry, not from certs_dir.
    sentry: SentrySettings | None = None
    # The local CA's certificates (spec.mtls of the Configuration; Sentry's defaults).
    workload_cert_ttl: float = 24 * 3600.0
    allowed_clock_skew: float = 15 * 60.0
    log_level: str = "info"
    log_as_json: bool = False
    metrics_enabled: bool = True
    metrics_port: int = 9090
    metrics_listen_address: str = "0.0.0.0"
    metric: MetricConfig = field(default_factory=MetricConfig)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    max_body_size: int = 4 * 1024 * 1024
    read_buffer_size: int = 4 * 1024
    # A request body with no byte for this long, or slower than min_body_rate bytes/s
    # after a 5 s grace (0: no rate rule), gets a 408 (proxy.edge.body_pace).
    # Open connections on the HTTP API port at most (idle keep-alive ones reclaimed first).
    max_connections: int = 4096
    # Calls of tether peers in progress here at once (the multiplexed stream reads no
    # further frames beyond these): per connection and per calling sidecar.
    calls_per_connection: int = 256
    calls_per_peer: int = 1024
    # Large answers parked for peers' FetchBody: in all, and an eighth of it per peer.
    max_parked_bodies: int = 1024
    body_read_timeout: float = 30.0
    min_body_rate: int = 240
    graceful_shutdown_seconds: float = 5.0
    api_token: str | None = None
    app_api_token: str | None = None
    registry_path: Path = field(default_factory=default_registry_path)
    registry_update_interval: float = 5.0
    mode: str = "standalone"
    # ``component`` is always set here (the mode's default when the file names none).
    name_resolution: NameResolutionSettings = field(
        default_factory=lambda: NameResolutionSettings("sqlite")
    )
    app_health: HealthCheckSettings | None = None
    # Refuse to start when a resource file has a problem (default: log it, skip that file).
    strict_config: bool = False
    # spec.accessControl of the Configuration; None: every caller may call every method.
    access_control: AccessControlSpec | None = None
    # --workers: processes sharing the ports; more than 1 runs a supervisor (proxy.supervisor).
    workers: int = 1
    # Bind the HTTP API and internal ports with SO_REUSEPORT: set for workers only, so a
    # lone sidecar still fails to start on a port that something else holds.
    reuse_port: bool = False
    worker: WorkerRole | None = None


def parse_size(text: str, flag: str) -> int:
    """Kubernetes-style quantities as daprd takes them: ``4Mi``, ``512Ki``, ``1G``, ``4096``."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"{flag}: {text!r} is not a size (examples: 4Mi, 512Ki, 1048576)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_duration_flag(text: str, flag: str) -> float:
    """A positive Go duration such as ``30s`` or ``1m30s``."""
    try:
        seconds = parse_go_duration(text)
    except DurationError as exc:
        raise UsageError(f"{flag}: {exc}") from exc
    if seconds <= 0:
        raise UsageError(f"{flag}: must be longer than 0s, not {text!r}")
    return seconds


def parse_port(text: str, flag: str, allow_zero: bool = False) -> int:
    if (
        not (text.isascii() and text.isdigit())
        or not (0 if allow_zero else 1) <= int(text) <= 65535
    ):
        raise UsageError(f"{flag}: {text!r} is not a port number (1-65535)")
    return int(text)


def parse_count(text: str, flag: str) -> int:
    """A whole number of at least 1."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise UsageError(f"{flag}: {text!r} is not a whole number of at least 1")
    return int(text)


def parse_workers(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WORKERS:
        raise UsageError(
            f"--workers: {text!r} is not a number of worker processes (1-{MAX_WORKERS})"
        )
    return int(text)


def parse_bool(text: str, flag: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    raise UsageError(f"{flag}: {text!r} is not true or false")


def identity_from_env(app_id: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Validated (app_id, namespace); ``NAMESPACE`` defaults to ``default``."""
    namespace = env.get("NAMESPACE") or "default"
    try:
        validate_app_id(app_id)
        validate_namespace(namespace)
    except InvalidSpiffeId as exc:
        raise UsageError(str(exc)) from exc
    return app_id, namespace


def host_identity(env: Mapping[str, str]) -> tuple[str, str]:
    """The address other sidecars reach us on, and our hostname.

    Standalone mode keeps to loopback unless ``DAPR_HOST_IP`` says otherwise:
    an internal port on every interface would be reachable from the network.
    """
    return env.get("DAPR_HOST_IP") or "127.0.0.1", socket.gethostname()


def announcement(settings: SidecarSettings, internal_port: int) -> Announcement:
    """What this sidecar tells discovery systems; the workers of one sidecar are one
    instance, which worker 0 alone announces on mDNS."""
    from proxy.discovery.sources import Announcement

    here = Announcement(settings.app_id, settings.namespace, settings.host_ip, internal_port)
    role = settings.worker
    if role is None:
        return here
    return replace(
        here,
        registration_id=role.registration_id,
        announce=role.index == 0,
        pid=role.supervisor_pid,
    )
