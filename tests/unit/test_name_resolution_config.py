"""spec.nameResolution for the DNS components and tether's own keys: every key's value,
its default, and every error reported at once as ``file: field.path: what``."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.configuration import ConfigError, load_configuration
from proxy.config.name_resolution import NameResolutionSettings
from proxy.discovery.answer_cache import CachePolicy
from proxy.discovery.outlier import OutlierPolicy
from proxy.discovery.resolution_settings import DnsResolution, PeerLiveness

HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\n"
AT = "spec.nameResolution.configuration."


def load(tmp_path: Path, component: str, config: str = "") -> NameResolutionSettings:
    path = tmp_path / "config.yaml"
    body = f"spec:\n  nameResolution:\n    component: {component}\n"
    if config:
        body += "    configuration:\n" + "".join(f"      {line}\n" for line in config.splitlines())
    path.write_text(HEADER + body)
    return load_configuration(path).name_resolution


def problems(tmp_path: Path, component: str, config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, component, config)
    prefix = f"{tmp_path / 'config.yaml'}: "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p.removeprefix(prefix) for p in info.value.problems]


def test_defaults_without_a_name_resolution_section(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(HEADER)
    settings = load_configuration(path).name_resolution
    assert settings.component == ""  # the default of --mode
    assert settings.cache == CachePolicy()
    assert settings.outlier == OutlierPolicy()
    assert settings.liveness == PeerLiveness(2.0, 10.0, 5.0)


def test_kubernetes_defaults_and_keys(tmp_path: Path) -> None:
    assert load(tmp_path, "kubernetes").dns == DnsResolution(
        "{appid}-dapr.{namespace}.svc.cluster.local"
    )
    assert load(tmp_path, "kubernetes", "clusterDomain: corp.example").dns == DnsResolution(
        "{appid}-dapr.{namespace}.svc.corp.example"
    )
    template = 'template: "{{.ID}}-dapr.{{.Namespace}}.internal:{{.Port}}"'
    assert load(tmp_path, "kubernetes", template).dns == DnsResolution(
        "{appid}-dapr.{namespace}.internal"
    )
    # Dapr decodes component metadata case-insensitively.
    assert load(tmp_path, "kubernetes", "CLUSTERDOMAIN: x.example").dns == DnsResolution(
        "{appid}-dapr.{namespace}.svc.x.example"
    )


def test_nameformat(tmp_path: Path) -> None:
    settings = load(tmp_path, "nameformat", 'format: "{appid}.{namespace}.apps.example"')
    assert settings.dns == DnsResolution("{appid}.{namespace}.apps.example")
    assert problems(tmp_path, "nameformat", "") == [
        AT.removesuffix(".") + '.format: missing (e.g. "{appid}.apps.example.com")'
    ]


def test_dns_defaults_and_keys(tmp_path: Path) -> None:
    assert load(tmp_path, "dns").dns == DnsResolution(
        "{appid}-dapr.{namespace}.svc.cluster.local", srv=True
    )
    config = 'name: "{appid}.{namespace}.mesh.test"\nnameservers: ["198.18.0.1:5353", "::1"]'
    assert load(tmp_path, "dns", config).dns == DnsResolution(
        "{appid}.{namespace}.mesh.test", srv=True, nameservers=("198.18.0.1:5353", "::1")
    )


def test_tether_keys_apply_to_every_component(tmp_path: Path) -> None:
    config = (
        "cache: {minTTL: 2s, maxTTL: 1m, staleWindow: 10m}\n"
        "ejection: {consecutiveFailures: 3, baseEjectionTime: 5s, maxEjectionTime: 1m,"
        " maxEjectionPercent: 34}\n"
        "connectTimeout: 500ms\nkeepaliveTime: 6s\nkeepaliveTimeout: 2s"
    )
    for component in ("sqlite", "kubernetes", "dns"):
        settings = load(tmp_path, component, config)
        assert settings.cache.ttl_floor == 2.0
        assert settings.cache.ttl_ceiling == 60.0
        assert settings.cache.stale_window == 600.0
        assert settings.outlier == OutlierPolicy(3, 5.0, 60.0, 34.0)
        assert settings.liveness == PeerLiveness(0.5, 6.0, 2.0)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = (
        'name: "{app}.x"\n'
        'nameservers: ["dns.example:53", "198.18.0.1:99999"]\n'
        "colour: blue\n"
        "cache: {minTTL: 10s, maxTTL: 5s}\n"
        "ejection: {consecutiveFailures: 0, maxEjectionPercent: 120, baseTime: 1s}\n"
        "connectTimeout: 10ms\nkeepaliveTime: 1s\nkeepaliveTimeout: soon"
    )
    assert problems(tmp_path, "dns", config) == [
        AT + "name: '{app}.x': unknown placeholder {app} (allowed: {appid}, {namespace})",
        AT + "nameservers[0]: 'dns.example:53': 'dns.example' is not an IPv4 or IPv6 address"
        " (nameservers are given by address, not by name)",
        AT + "nameservers[1]: '198.18.0.1:99999': port 99999 is outside 1-65535",
        AT + "colour: unknown field",
        AT + "cache.maxTTL: must not be less than minTTL (10s)",
        AT + 'ejection.baseTime: unknown field (did you mean "baseEjectionTime"?)',
        AT + "ejection.consecutiveFailures: must be 1 or more, not 0",
        AT + "ejection.maxEjectionPercent: must be between 0 and 100, not 120",
        AT + 'connectTimeout: "10ms" is too short (at least "100ms")',
        AT + 'keepaliveTime: "1s" is too short (at least "5s")',
        AT + 'keepaliveTimeout: "soon" is not a duration',
    ]


def test_kubernetes_problems(tmp_path: Path) -> None:
    config = 'clusterDomain: "bad..domain"\ntemplate: "{{.ID}}-{{.Data.region}}.internal"'
    found = problems(tmp_path, "kubernetes", config)
    assert found[0].startswith(AT + "clusterDomain: ")
    assert "empty label" in found[0]
    assert found[1] == (
        AT + "template: '{{.ID}}-{{.Data.region}}.internal': {{.Data.region}} is not supported"
        " by tether (supported: {{.ID}}, {{.Namespace}}, and {{.Port}} as the port)"
    )
    assert problems(tmp_path, "kubernetes", "template: 7") == [
        AT + "template: expected a string, got an integer"
    ]


def test_nameformat_needs_the_app_id(tmp_path: Path) -> None:
    assert problems(tmp_path, "nameformat", 'format: "{namespace}.apps"') == [
        AT + "format: '{namespace}.apps': must contain {appid}"
    ]


def test_component_keys_of_another_component_are_unknown(tmp_path: Path) -> None:
    assert problems(tmp_path, "kubernetes", "nameservers: []") == [
        AT + "nameservers: unknown field"
    ]
    assert problems(tmp_path, "dns", "nameservers: 198.18.0.1") == [
        AT + 'nameservers: expected a list of "host:port" strings, got a string'
    ]
