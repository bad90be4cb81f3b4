"""The ``tether`` command: ``sidecar``, ``run`` and ``certs init``.

Every error is one clear line (or one line per problem) on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn, TypeVar

from certs.errors import CertError
from proxy.app.health import HealthCheckSettings
from proxy.config.certificate_settings import certificate_settings
from proxy.config.configuration import ConfigError, load_configuration
from proxy.config.name_resolution import NameResolutionSettings
from proxy.config.resources import check_resources
from proxy.config.settings import (
    DEFAULT_TRUST_DOMAIN,
    SidecarSettings,
    host_identity,
    identity_from_env,
    parse_bool,
    parse_count,
    parse_duration_flag,
    parse_port,
    parse_size,
    parse_workers,
)
from proxy.core.errors import TetherError, UsageError
from proxy.discovery.resolution_settings import (
    CLUSTER_INTERNAL_PORT,
    DNS_COMPONENTS,
    KUBERNETES,
    SQLITE,
    kubernetes_resolution,
)
from proxy.file_commands import certs_init, config_check, resiliency_check
from proxy.hop import grpc_tuning
from proxy.observability.logs import LEVELS, configure_logging
from proxy.observability.tracing_settings import parse_tracing

T = TypeVar("T")

DEFAULT_CERTS_DIR = "~/.tether/certs"
MODES = ("standalone", "kubernetes")

# daprd flags that later work builds; refused until they do what they say.
_NOT_YET = {
    "--dapr-public-port": "the public health port",
    "--dapr-public-listen-address": "the public health port",
    "--profile-port": "profiling",
    "--enable-profiling": "profiling",
    "--unix-domain-socket": "Unix domain sockets",
    "--control-plane-address": "a control plane",
    "--placement-host-address": "actors",
    "--scheduler-host-address": "the scheduler",
    "--enable-api-logging": "API logging",
    "--dapr-block-shutdown-duration": "blocked shutdown",
    "--allowed-origins": "CORS",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _add_sidecar_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--app-id", required=True, help="this app's ID")
    add("--app-port", default="", help="port the app listens on (empty: no app channel)")
    add("--app-protocol", default="http", help="protocol of the app channel (http)")
    add("--app-channel-address", default="127.0.0.1", help="address the app listens on")
    add(
        "--app-max-concurrency", default="-1", help="max concurrent calls to the app (-1: no limit)"
    )
    add("--dapr-http-port", default="3500", help="HTTP API port")
    add("--dapr-grpc-port", default="", help="gRPC API port (default 50001; a free one under run)")
    add("--dapr-listen-addresses", default="127.0.0.1", help="comma-separated API bind addresses")
    add("--dapr-internal-grpc-port", default="", help="sidecar-to-sidecar port (default: free)")
    add("--dapr-internal-grpc-listen-address", default="", help="internal bind address")
    add("--resources-path", "--components-path", action="append", default=[],
        help="folder of resource YAML files (repeatable)")  # fmt: skip
    add("--config", default="", help="a Dapr Configuration YAML file")
    add("--enable-mtls", nargs="?", const="true", default=None,
        help="mTLS between sidecars (default: off for sidecar, on for run)")  # fmt: skip
    add("--certs-dir", default=DEFAULT_CERTS_DIR, help="local CA folder (tether certs init)")
    add("--sentry-address", help="HOST:PORT of a Sentry signing this sidecar's certificates")
    add("--control-plane-trust-domain", help="Sentry's trust domain (default localhost)")
    add("--control-plane-namespace", help='Sentry\'s namespace (default "default")')
    add("--log-level", default="info", choices=sorted(LEVELS), help="log verbosity")
    add("--log-as-json", nargs="?", const="true", default="false", help="JSON log lines")
    add("--enable-metrics", nargs="?", const="true", default=None,
        help="serve Prometheus metrics (default true)")  # fmt: skip
    add("--metrics-port", default="", help="metrics port (default 9090; a free one under run)")
    add(
        "--metrics-listen-address",
        default=None,
        help="metrics bind address (tether sidecar: 0.0.0.0, as daprd; tether run: 127.0.0.1)",
    )
    add("--max-body-size", default="4Mi", help="largest request body accepted")
    add("--read-buffer-size", default="4Ki", help="largest request head (line + headers)")
    add(
        "--max-connections",
        default="4096",
        help="open connections per listener at most; at the cap idle ones are closed first",
    )
    add("--max-calls-per-connection", default="256", help="calls in progress per peer connection")
    add("--max-calls-per-peer", default="1024", help="calls in progress per calling sidecar")
    add(
        "--max-parked-bodies",
        default="1024",
        help="large answers waiting for a peer to fetch them (an eighth per peer)",
    )
    add("--body-read-timeout", default="30s", help="408 after no request body byte for this long")
    add(
        "--min-body-rate",
        default="240",
        help="408 for a request body slower than this many bytes/s after 5s (0: off)",
    )
    add("--dapr-graceful-shutdown-seconds", default="5", help="drain time on shutdown")
    add("--mode", default="standalone", choices=MODES,
        help="standalone (resolver: sqlite) or kubernetes (resolver: kubernetes)")  # fmt: skip
    add("--strict-config", action="store_true",
        help="refuse to start on any resource file problem (default: skip that file)")  # fmt: skip
    add("--enable-app-health-check", nargs="?", const="true", default="false",
        help="probe the app; short-circuit calls while it is unhealthy")  # fmt: skip
    add("--app-health-check-path", default="/healthz", help="path probed (2xx is healthy)")
    add("--app-health-probe-interval", default="5", help="seconds between probes")
    add("--app-health-probe-timeout", default="500", help="milliseconds a probe may take")
    add("--app-health-threshold", default="3", help="failed probes before unhealthy")
    add("--workers", default="1",
        help="processes sharing the ports, to use more cores (tether's; default 1)")  # fmt: skip
    for flag in _NOT_YET:
        add(flag, nargs="?", const="", default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tether", description="A Dapr-compatible service invocation sidecar.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sidecar = commands.add_parser("sidecar", help="run one sidecar")
    _add_sidecar_flags(sidecar)
    run = commands.add_parser("run", help="run a sidecar and an app beside it: run [flags] -- CMD")
    _add_sidecar_flags(run)
    resiliency = commands.add_parser("resiliency", help="Resiliency policy files")
    resiliency_commands = resiliency.add_subparsers(
        dest="resiliency_command", required=True, parser_class=_Parser
    )
    check = resiliency_commands.add_parser("check", help="validate files before deploying them")
    check.add_argument("files", nargs="+", help="Resiliency YAML files or folders")
    config = commands.add_parser("config", help="Dapr Configuration files")
    config_commands = config.add_subparsers(
        dest="config_command", required=True, parser_class=_Parser
    )
    config_check = config_commands.add_parser("check", help="validate files before using them")
    config_check.add_argument("files", nargs="+", help="Configuration YAML files")
    certs = commands.add_parser("certs", help="local certificate authority")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True, parser_class=_Parser)
    init = certs_commands.add_parser("init", help="create a root CA and an issuer")
    init.add_argument("--dir", default=DEFAULT_CERTS_DIR, help="where to write the files")
    init.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN, help="SPIFFE trust domain")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def settings_from_args(
    args: argparse.Namespace, env: Mapping[str, str], *, mtls_default: bool
) -> SidecarSettings:
    """Flags > environment > Configuration YAML > defaults, decided here only."""
    refused = [flag for flag in _NOT_YET if getattr(args, _dest(flag)) is not None]
    if refused:
        flag = refused[0]
        raise UsageError(f"{flag}: {_NOT_YET[flag]} is not supported by tether yet")
    if args.app_protocol not in ("http", "grpc", "grpcs"):
        raise UsageError(
            f"--app-protocol: {args.app_protocol!r} is not supported (supported: http, grpc, grpcs)"
        )
    app_id, namespace = identity_from_env(args.app_id, env)
    host_ip, hostname = host_identity(env)
    resources = tuple(Path(p).expanduser() for p in args.resources_path)
    check_resources(resources)
    settings = SidecarSettings(
        app_id=app_id,
        app_port=parse_port(args.app_port, "--app-port") if args.app_port else None,
        app_protocol=args.app_protocol,
        app_channel_address=args.app_channel_address,
        app_max_concurrency=_int(args.app_max_concurrency, "--app-max-concurrency"),
        http_port=parse_port(args.dapr_http_port, "--dapr-http-port"),
        grpc_port=parse_port(args.dapr_grpc_port or "50001", "--dapr-grpc-port"),
        listen_addresses=tuple(
            a.strip().strip("[]") for a in args.dapr_listen_addresses.split(",") if a.strip()
        ),
        internal_grpc_port=(
            parse_port(args.dapr_internal_grpc_port, "--dapr-internal-grpc-port")
            if args.dapr_internal_grpc_port
            else 0
        ),
        internal_listen_address=args.dapr_internal_grpc_listen_address or host_ip,
        host_ip=host_ip,
        hostname=hostname,
        namespace=namespace,
        resources_paths=resources,
        config_path=Path(args.config).expanduser() if args.config else None,
        enable_mtls=(
            mtls_default
            if args.enable_mtls is None
            else parse_bool(args.enable_mtls, "--enable-mtls")
        ),
        certs_dir=Path(args.certs_dir).expanduser(),
        log_level=args.log_level,
        log_as_json=parse_bool(args.log_as_json, "--log-as-json"),
        max_body_size=parse_size(args.max_body_size, "--max-body-size"),
        read_buffer_size=parse_size(args.read_buffer_size, "--read-buffer-size"),
        max_connections=parse_count(args.max_connections, "--max-connections"),
        calls_per_connection=parse_count(
            args.max_calls_per_connection, "--max-calls-per-connection"
        ),
        calls_per_peer=parse_count(args.max_calls_per_peer, "--max-calls-per-peer"),
        max_parked_bodies=parse_count(args.max_parked_bodies, "--max-parked-bodies"),
        body_read_timeout=parse_duration_flag(args.body_read_timeout, "--body-read-timeout"),
        min_body_rate=parse_size(args.min_body_rate, "--min-body-rate"),
        graceful_shutdown_seconds=float(
            _int(args.dapr_graceful_shutdown_seconds, "--dapr-graceful-shutdown-seconds")
        ),
        metrics_port=parse_port(args.metrics_port, "--metrics-port") if args.metrics_port else 9090,
        # Only a `tether run` is sure nothing else scrapes it: loopback there.
        metrics_listen_address=args.metrics_listen_address
        or ("127.0.0.1" if args.command == "run" else "0.0.0.0"),
        app_health=_health_settings(args),
        strict_config=args.strict_config,
        workers=parse_workers(args.workers),
        api_token=env.get("DAPR_API_TOKEN") or None,
        app_api_token=env.get("APP_API_TOKEN") or None,
    )
    mtls = None
    if settings.config_path is None:
        tracing, problems = parse_tracing({}, env, "environment")
        if problems:
            raise UsageError("\n".join(problems))
        settings = replace(settings, tracing=tracing)
    else:
        try:
            configuration = load_configuration(settings.config_path, env)
        except ConfigError as exc:
            raise UsageError(str(exc)) from exc
        resolution = configuration.name_resolution
        if resolution.registry_path is not None:
            settings = replace(settings, registry_path=resolution.registry_path)
        settings = replace(
            settings,
            registry_update_interval=resolution.update_interval,
            name_resolution=resolution,
            metric=configuration.metric,
            tracing=configuration.tracing,
            access_control=configuration.access_control,
        )
        mtls = configuration.mtls
        if configuration.access_control is not None:
            # Dapr: the app's trust domain (its SPIFFE ID's) comes from accessControl.
            settings = replace(settings, trust_domain=configuration.access_control.trust_domain)
    control_plane = (args.control_plane_trust_domain, args.control_plane_namespace)
    settings = certificate_settings(settings, mtls, args.sentry_address, control_plane, env)
    configured = (
        settings.name_resolution if settings.config_path is not None else NameResolutionSettings()
    )
    settings = _resolution_for_mode(
        settings, configured, args.mode, explicit_port=bool(args.dapr_internal_grpc_port)
    )
    enabled = settings.metric.enabled
    if args.enable_metrics is not None:
        enabled = parse_bool(args.enable_metrics, "--enable-metrics")
    return replace(settings, metrics_enabled=True if enabled is None else enabled)


def _resolution_for_mode(
    settings: SidecarSettings,
    resolution: NameResolutionSettings,
    mode: str,
    *,
    explicit_port: bool,
) -> SidecarSettings:
    """The resolver the mode implies when the Configuration names none, and the internal
    port DNS resolution needs: every sidecar of a cluster listens on the same one."""
    component = resolution.component or (KUBERNETES if mode == "kubernetes" else SQLITE)
    dns = resolution.dns
    if component == KUBERNETES and dns is None:
        dns = kubernetes_resolution()
    resolution = replace(resolution, component=component, dns=dns)
    settings = replace(settings, mode=mode, name_resolution=resolution)
    if component in DNS_COMPONENTS and not explicit_port:
        settings = replace(settings, internal_grpc_port=CLUSTER_INTERNAL_PORT)
    return settings


def _health_settings(args: argparse.Namespace) -> HealthCheckSettings | None:
    if not parse_bool(args.enable_app_health_check, "--enable-app-health-check"):
        return None
    if not args.app_port:
        raise UsageError("--enable-app-health-check: needs --app-port (there is no app to probe)")
    interval = _int(args.app_health_probe_interval, "--app-health-probe-interval")
    timeout = _int(args.app_health_probe_timeout, "--app-health-probe-timeout")
    threshold = _int(args.app_health_threshold, "--app-health-threshold")
    if interval < 1 or timeout < 1 or threshold < 1:
        raise UsageError("--app-health-probe-interval, -timeout and -threshold must be at least 1")
    path = args.app_health_check_path
    if not path.startswith("/"):
        raise UsageError(f"--app-health-check-path: {path!r} must start with /")
    return HealthCheckSettings(path, float(interval), timeout / 1000, threshold)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a whole number") from None


def _run_event_loop(coroutine: Coroutine[object, object, T]) -> T:
    import uvloop

    from proxy.process_limits import raise_open_file_limit

    raise_open_file_limit()  # workers inherit it from the supervisor

    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command_line: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command_line = argv[:split], argv[split + 1 :]
    if argv[:1] == ["sentry"]:  # the CA service has its own package and flags
        from sentry.cli import main as sentry_main

        return sentry_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        if args.command == "certs":
            return certs_init(args)
        if args.command == "resiliency":
            return resiliency_check(args.files)
        if args.command == "config":
            return config_check(args.files)
        settings = settings_from_args(args, os.environ, mtls_default=args.command == "run")
        configure_logging(settings.log_level, settings.app_id, settings.log_as_json)
        if args.command == "sidecar":
            if command_line:
                raise UsageError("'tether sidecar' takes no command; use 'tether run ... -- CMD'")
            if settings.workers > 1:
                from proxy.supervisor import run_supervisor

                return _run_event_loop(run_supervisor(settings))
            grpc_tuning.apply()
            from proxy.sidecar import run_sidecar

            _run_event_loop(run_sidecar(settings))
            return 0
        from proxy.runner import run_with_app

        return run_with_app(argv[1:], command_line, settings)
    except (TetherError, CertError) as exc:
        for line in str(exc).splitlines() or ["error"]:
            print(f"tether: error: {line}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
