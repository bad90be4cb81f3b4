"""``spec.nameResolution`` of a Dapr Configuration: the component and its keys.

Components: ``sqlite`` (tether's embedded registry, the standalone default),
``kubernetes`` and ``nameformat`` (Dapr's), ``dns`` (tether's). Every other component is
refused with a message. Component keys follow Dapr (matched case-insensitively, as
Dapr decodes component metadata); tether's own keys go in the same ``configuration``
map and apply to every component::

    configuration:
      cache:                    # answers of the discovery system
        minTTL: 1s              # a record's TTL is raised to this...
        maxTTL: 30s             # ...and lowered to this
        staleWindow: 5m         # last good answer kept while refreshes fail
      ejection:                 # instances failing at the connection level
        consecutiveFailures: 5
        baseEjectionTime: 30s   # n-th ejection in a row lasts n times this...
        maxEjectionTime: 5m     # ...at most this
        maxEjectionPercent: 50  # never more out at once (but always one may be)
      connectTimeout: 2s        # a connection attempt to a peer gives up
      keepaliveTime: 10s        # pings on an open connection to a peer...
      keepaliveTimeout: 5s      # ...unanswered this long: the peer is gone

Component keys:

- ``sqlite``: ``connectionString``, ``updateInterval`` (and Dapr's default
  ``tableName`` / ``metadataTableName``).
- ``kubernetes``: ``clusterDomain`` (``cluster.local``), ``template`` (Dapr's Go
  template; ``{{.ID}}``, ``{{.Namespace}}`` and ``{{.Port}}`` as the port).
- ``nameformat``: ``format`` (required, with ``{appid}``; ``{namespace}`` too).
- ``dns``: ``name`` (``{appid}-dapr.{namespace}.svc.cluster.local``), ``nameservers``
  (a list of ``host:port``; default ``/etc/resolv.conf``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.discovery import resolution_settings as rs
from proxy.discovery.answer_cache import CachePolicy
from proxy.discovery.dapr_templates import convert_go_template
from proxy.discovery.dns_names import (
    DEFAULT_CLUSTER_DOMAIN,
    DnsNameError,
    InvalidNameserver,
    parse_nameservers,
    validate_dns_name,
    validate_template,
)
from proxy.discovery.outlier import OutlierPolicy
from proxy.discovery.resolution_settings import DnsResolution, PeerLiveness
from yamlcheck import Problems, show, type_name

SUPPORTED_RESOLVERS = (rs.SQLITE, rs.KUBERNETES, rs.NAMEFORMAT, rs.DNS, rs.MDNS)
_NAME_RESOLUTION_KEYS = ("component", "version", "configuration")

_SQLITE_KEYS = ("connectionString", "updateInterval", "tableName", "metadataTableName")
_UNIMPLEMENTED_SQLITE_KEYS = ("cleanupInterval", "timeout", "busyTimeout", "disableWAL")
_COMPONENT_KEYS: dict[str, tuple[str, ...]] = {
    rs.SQLITE: _SQLITE_KEYS + _UNIMPLEMENTED_SQLITE_KEYS,
    rs.KUBERNETES: ("clusterDomain", "template"),
    rs.NAMEFORMAT: ("format",),
    rs.DNS: ("name", "nameservers"),
    rs.MDNS: (),  # as in Dapr: no metadata
}
_TETHER_KEYS = ("cache", "ejection", "connectTimeout", "keepaliveTime", "keepaliveTimeout")
_CACHE_KEYS = ("minTTL", "maxTTL", "staleWindow")
_EJECTION_KEYS = (
    "consecutiveFailures",
    "baseEjectionTime",
    "maxEjectionTime",
    "maxEjectionPercent",
)
# daprd's internal server refuses pings closer than 5 s (too_many_pings).
_MIN_KEEPALIVE_TIME = 5.0


@dataclass(frozen=True)
class NameResolutionSettings:
    component: str = ""  # "": the default of --mode (sqlite; kubernetes under kubernetes)
    registry_path: Path | None = None  # sqlite; None: the default registry path
    update_interval: float = 5.0  # sqlite heartbeat
    dns: DnsResolution | None = None  # the DNS components; None: not chosen here
    cache: CachePolicy = field(default_factory=CachePolicy)
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    liveness: PeerLiveness = field(default_factory=PeerLiveness)


@dataclass
class _Draft:
    registry_path: Path | None = None
    update_interval: float = 5.0
    dns: DnsResolution | None = None
    cache: CachePolicy = field(default_factory=CachePolicy)
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    liveness: PeerLiveness = field(default_factory=PeerLiveness)


def parse_name_resolution(problems: Problems, value: object) -> NameResolutionSettings:
    at = "spec.nameResolution"
    default = NameResolutionSettings()
    if value is None:
        return default
    section = problems.mapping(at, value)
    if section is None:
        return default
    for key in section:
        if key not in _NAME_RESOLUTION_KEYS:
            problems.unknown(at, key, _NAME_RESOLUTION_KEYS)
    if "version" in section and section["version"] not in ("v1", "", None):
        version = section["version"]
        shown = show(version) if isinstance(version, str) else type_name(version)
        problems.add(f"{at}.version", f"{shown} is not supported (supported: v1)")
    supported = ", ".join(SUPPORTED_RESOLVERS)
    if "component" not in section:
        problems.add(f"{at}.component", f"missing (supported: {supported})")
        return default
    component = problems.string(f"{at}.component", section["component"])
    if component is None:
        return default
    if component not in SUPPORTED_RESOLVERS:
        problems.add(
            f"{at}.component", f"{show(component)} is not supported yet (supported: {supported})"
        )
        return default
    before = len(problems)
    draft = _configuration(problems, f"{at}.configuration", component, section.get("configuration"))
    if len(problems) > before:
        return default
    if component == rs.KUBERNETES and draft.dns is None:
        draft.dns = rs.kubernetes_resolution()
    if component == rs.DNS and draft.dns is None:
        draft.dns = DnsResolution(rs.DEFAULT_DNS_NAME, srv=True)
    return NameResolutionSettings(
        component,
        draft.registry_path,
        draft.update_interval,
        draft.dns,
        draft.cache,
        draft.outlier,
        draft.liveness,
    )


def _configuration(problems: Problems, at: str, component: str, value: object) -> _Draft:
    draft = _Draft()
    if value is None:
        if component == rs.NAMEFORMAT:
            problems.add(f"{at}.format", 'missing (e.g. "{appid}.apps.example.com")')
        return draft
    config = problems.mapping(at, value)
    if config is None:
        return draft
    own = _COMPONENT_KEYS[component]
    known = own + _TETHER_KEYS
    # Dapr decodes component metadata case-insensitively; tether's keys are read alike.
    canonical = {key.lower(): key for key in known}
    values: dict[str, Any] = {}
    for raw_key, item in config.items():
        key = canonical.get(raw_key.lower())
        if key is None:
            problems.unknown(at, raw_key, known)
            continue
        sub = f"{at}.{raw_key}"
        if key in _TETHER_KEYS:
            _tether_key(problems, sub, key, item, draft)
        elif component == rs.SQLITE:
            _sqlite_key(problems, sub, key, item, draft)
        else:
            values[key] = _dns_key(problems, sub, key, item)
    if component == rs.KUBERNETES:
        if values.get("template") is not None:
            host = values["template"]
            draft.dns = DnsResolution(host.template, host.port)
        else:
            draft.dns = rs.kubernetes_resolution(
                values.get("clusterDomain") or DEFAULT_CLUSTER_DOMAIN
            )
    elif component == rs.NAMEFORMAT:
        if "format" not in values:
            problems.add(f"{at}.format", 'missing (e.g. "{appid}.apps.example.com")')
        elif values["format"] is not None:
            draft.dns = DnsResolution(values["format"])
    elif component == rs.DNS:
        draft.dns = DnsResolution(
            values.get("name") or rs.DEFAULT_DNS_NAME,
            srv=True,
            nameservers=values.get("nameservers") or (),
        )
    return draft


# -- component keys ----------------------------------------------------------------------


def _sqlite_key(problems: Problems, sub: str, key: str, item: object, draft: _Draft) -> None:
    if key in _UNIMPLEMENTED_SQLITE_KEYS:
        problems.add(sub, "not supported yet by tether")
    elif key == "connectionString":
        draft.registry_path = _registry_path(problems, sub, item)
    elif key == "updateInterval":
        draft.update_interval = _update_interval(problems, sub, item) or draft.update_interval
    else:
        # tableName / metadataTableName: only Dapr's default names exist here.
        expected = "hosts" if key == "tableName" else "metadata"
        if item != expected:
            shown = show(item) if isinstance(item, str) else type_name(item)
            problems.add(sub, f'{shown} is not supported yet (only "{expected}")')


def _dns_key(problems: Problems, sub: str, key: str, item: object) -> Any:
    """The parsed value of a DNS component's key, None after a problem."""
    if key in ("format", "name"):
        return _name_template(problems, sub, item)
    if key == "nameservers":
        return _nameservers(problems, sub, item)
    text = problems.string(sub, item)
    if text is None:
        return None
    try:
        if key == "template":
            return convert_go_template(text)
        return validate_dns_name(text.strip().rstrip("."))  # clusterDomain
    except DnsNameError as exc:
        problems.add(sub, str(exc))
        return None


def _nameservers(problems: Problems, sub: str, item: object) -> tuple[str, ...] | None:
    if not isinstance(item, list) or not all(isinstance(n, str) for n in item):
        problems.add(sub, f'expected a list of "host:port" strings, got {type_name(item)}')
        return None
    try:
        parse_nameservers(item)
    except InvalidNameserver as exc:
        for problem in exc.problems:
            index, bracket, what = problem.partition("] ")
            if bracket and index.startswith("["):
                problems.add(f"{sub}{index}]", what)
            else:
                problems.add(sub, problem)
        return None
    return tuple(item)


def _name_template(problems: Problems, sub: str, item: object) -> str | None:
    text = problems.string(sub, item)
    if text is None:
        return None
    try:
        validate_template(text)
    except DnsNameError as exc:
        problems.add(sub, str(exc))
        return None
    return text


def _registry_path(problems: Problems, at: str, value: object) -> Path | None:
    text = problems.string(at, value)
    if text is None:
        return None
    if not text.strip():
        problems.add(at, "must not be empty")
        return None
    if text == ":memory:" or "mode=memory" in text:
        problems.add(at, "an in-memory database cannot be shared between sidecars")
        return None
    if "?" in text:
        problems.add(at, "connection options after '?' are not supported yet by tether")
        return None
    # Dapr accepts SQLite URI filenames; a plain "file:" prefix just names a path.
    return Path(text.removeprefix("file:")).expanduser()


def _update_interval(problems: Problems, at: str, value: object) -> float | None:
    seconds = problems.duration(at, value)
    if seconds is None:
        return None
    # Dapr's sqlite resolver stores whole-second timestamps.
    if seconds < 1:
        problems.add(at, f'{show(value)} is too short (at least "1s")')
        return None
    if seconds != int(seconds):
        problems.add(at, f"{show(value)} is not a whole number of seconds")
        return None
    return seconds


# -- tether's keys ---------------------------------------------------------------------


def _tether_key(problems: Problems, at: str, key: str, value: object, draft: _Draft) -> None:
    if key == "cache":
        draft.cache = _cache(problems, at, value) or draft.cache
    elif key == "ejection":
        draft.outlier = _ejection(problems, at, value) or draft.outlier
    else:
        live = draft.liveness
        if key == "connectTimeout":
            seconds = _at_least(problems, at, value, 0.1, '"100ms"')
            if seconds is not None:
                draft.liveness = PeerLiveness(seconds, live.keepalive_time, live.keepalive_timeout)
        elif key == "keepaliveTime":
            seconds = _at_least(problems, at, value, _MIN_KEEPALIVE_TIME, '"5s"')
            if seconds is not None:
                draft.liveness = PeerLiveness(live.connect_timeout, seconds, live.keepalive_timeout)
        else:
            seconds = _at_least(problems, at, value, 1.0, '"1s"')
            if seconds is not None:
                draft.liveness = PeerLiveness(live.connect_timeout, live.keepalive_time, seconds)


def _at_least(problems: Problems, at: str, value: object, least: float, shown: str) -> float | None:
    seconds = problems.duration(at, value)
    if seconds is None:
        return None
    if seconds < least:
        problems.add(at, f"{show(value)} is too short (at least {shown})")
        return None
    return seconds


def _cache(problems: Problems, at: str, value: object) -> CachePolicy | None:
    section = problems.mapping(at, value, _CACHE_KEYS)
    if section is None:
        return None
    base = CachePolicy()
    before = len(problems)
    floor = base.ttl_floor
    ceiling = base.ttl_ceiling
    stale = base.stale_window
    if "minTTL" in section:
        floor = _at_least(problems, f"{at}.minTTL", section["minTTL"], 0.1, '"100ms"') or floor
    if "maxTTL" in section:
        ceiling = _at_least(problems, f"{at}.maxTTL", section["maxTTL"], 0.1, '"100ms"') or ceiling
    if "staleWindow" in section:
        found = problems.duration(f"{at}.staleWindow", section["staleWindow"])
        stale = stale if found is None else found
    if len(problems) > before:
        return None
    if floor > ceiling:
        problems.add(f"{at}.maxTTL", f"must not be less than minTTL ({floor:g}s)")
        return None
    return CachePolicy(
        ttl_floor=floor,
        ttl_ceiling=ceiling,
        default_ttl=min(max(base.default_ttl, floor), ceiling),
        negative_ttl=max(base.negative_ttl, floor),
        stale_window=stale,
    )


def _ejection(problems: Problems, at: str, value: object) -> OutlierPolicy | None:
    section = problems.mapping(at, value, _EJECTION_KEYS)
    if section is None:
        return None
    base = OutlierPolicy()
    before = len(problems)
    failures = base.consecutive_failures
    if "consecutiveFailures" in section:
        found = problems.integer(f"{at}.consecutiveFailures", section["consecutiveFailures"], 1)
        failures = found if found is not None else failures
    times = {"baseEjectionTime": base.base_ejection_time, "maxEjectionTime": base.max_ejection_time}
    for key in times:
        if key in section:
            times[key] = _at_least(problems, f"{at}.{key}", section[key], 0.1, '"100ms"') or 0.0
    percent = base.max_ejection_percent
    if "maxEjectionPercent" in section:
        found_percent = problems.number(
            f"{at}.maxEjectionPercent", section["maxEjectionPercent"], 0, 100
        )
        percent = found_percent if found_percent is not None else percent
    if len(problems) > before:
        return None
    if times["maxEjectionTime"] < times["baseEjectionTime"]:
        problems.add(f"{at}.maxEjectionTime", "must not be less than baseEjectionTime")
        return None
    return OutlierPolicy(
        consecutive_failures=failures,
        base_ejection_time=times["baseEjectionTime"],
        max_ejection_time=times["maxEjectionTime"],
        max_ejection_percent=percent,
    )
