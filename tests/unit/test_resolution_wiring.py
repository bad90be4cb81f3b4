"""The pieces that carry name resolution settings into the sidecar: --mode and the
default resolver, the internal port DNS resolution needs, the peer channel options,
the resolution metrics and the instance on the caller's span."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import build_parser, settings_from_args
from proxy.config.settings import SidecarSettings
from proxy.core.errors import UsageError
from proxy.discovery.resolution_settings import DnsResolution
from proxy.hop.grpc_tuning import channel_options
from proxy.observability.metrics import Metrics
from proxy.observability.spans import peer_attributes


def settings(
    *flags: str, config: str | None = None, tmp_path: Path | None = None
) -> SidecarSettings:
    argv = ["sidecar", "--app-id", "checkout", *flags]
    if config is not None:
        assert tmp_path is not None
        path = tmp_path / "config.yaml"
        path.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\n" + config
        )
        argv += ["--config", str(path)]
    return settings_from_args(build_parser().parse_args(argv), {}, mtls_default=False)


def test_standalone_mode_defaults_to_sqlite_on_a_free_port() -> None:
    found = settings()
    assert found.mode == "standalone"
    assert found.name_resolution.component == "sqlite"
    assert found.internal_grpc_port == 0


def test_kubernetes_mode_defaults_to_the_kubernetes_resolver_on_50002() -> None:
    found = settings("--mode", "kubernetes")
    assert found.name_resolution.component == "kubernetes"
    assert found.name_resolution.dns == DnsResolution("{appid}-dapr.{namespace}.svc.cluster.local")
    assert found.internal_grpc_port == 50002
    assert (
        settings("--mode", "kubernetes", "--dapr-internal-grpc-port", "6000").internal_grpc_port
        == 6000
    )


def test_a_configured_component_wins_over_the_mode(tmp_path: Path) -> None:
    sqlite = "spec:\n  nameResolution:\n    component: sqlite\n"
    found = settings("--mode", "kubernetes", config=sqlite, tmp_path=tmp_path)
    assert found.name_resolution.component == "sqlite"
    assert found.internal_grpc_port == 0
    dns = "spec:\n  nameResolution:\n    component: dns\n"
    found = settings(config=dns, tmp_path=tmp_path)
    assert found.name_resolution.component == "dns"
    assert found.internal_grpc_port == 50002


def test_unknown_modes_are_refused() -> None:
    with pytest.raises(UsageError, match="invalid choice: 'cloud'"):
        settings("--mode", "cloud")


def test_channel_options_carry_keepalive_and_the_connect_timeout() -> None:
    options = dict(
        channel_options(1024, connect_timeout=0.5, keepalive_time=6, keepalive_timeout=2)
    )
    assert options["grpc.keepalive_time_ms"] == 6000
    assert options["grpc.keepalive_timeout_ms"] == 2000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.min_reconnect_backoff_ms"] == 500
    assert options["grpc.initial_reconnect_backoff_ms"] == 500
    defaults = dict(channel_options(1024))
    assert defaults["grpc.keepalive_time_ms"] == 10_000  # daprd's
    assert defaults["grpc.min_reconnect_backoff_ms"] == 2000


def test_resolution_metrics() -> None:
    metrics = Metrics("checkout")
    metrics.resolution_lookup("orders", "prod", "ok")
    metrics.resolution_lookup("orders", "prod", "unavailable")
    metrics.resolution_answer("orders", "prod", 3)
    metrics.resolution_stale("orders", "prod", 42.5)
    metrics.resolution_failed("billing", "prod", "not_found")
    metrics.resolution_ejection("orders", "prod", 1)
    metrics.resolution_returned("orders", "prod", 0)
    text = metrics.exposition()[0].decode()
    dst = 'app_id="checkout",dst_app_id="orders",dst_namespace="prod"'
    assert f'tether_resolution_lookups_total{{{dst},result="ok"}} 1.0' in text
    assert f'tether_resolution_lookups_total{{{dst},result="unavailable"}} 1.0' in text
    assert f"tether_resolution_instances{{{dst}}} 3.0" in text
    assert f"tether_resolution_stale_total{{{dst}}} 1.0" in text
    assert f"tether_resolution_answer_age_seconds{{{dst}}} 42.5" in text
    assert f"tether_resolution_ejections_total{{{dst}}} 1.0" in text
    assert f"tether_resolution_ejected_instances{{{dst}}} 0.0" in text
    assert (
        'tether_resolution_failures_total{app_id="checkout",dst_app_id="billing",'
        'dst_namespace="prod",reason="not_found"} 1.0'
    ) in text
    assert "# TYPE tether_resolution_lookups_total counter" in text
    assert "# TYPE tether_resolution_instances gauge" in text


def test_the_chosen_instance_goes_on_the_span() -> None:
    assert peer_attributes("2001:db8::1", 50002) == {
        "server.address": "2001:db8::1",
        "server.port": 50002,
        "network.peer.address": "2001:db8::1",
        "network.peer.port": 50002,
    }
