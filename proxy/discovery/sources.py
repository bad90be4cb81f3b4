"""Building the instance source a Configuration names, from plain values: the one
place that knows which discovery system each component is.

Each discovery system is imported only when it is the one configured: dnspython
(about 3 MB of a sidecar's memory) for the DNS components, zeroconf (about 3.5 MB)
for mdns. A sidecar on the SQLite registry loads neither.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

from proxy.core.errors import TetherError
from proxy.discovery.dns_names import DnsNameError
from proxy.discovery.registry import Endpoint, Registration, SqliteRegistry
from proxy.discovery.resolution_settings import MDNS, DnsResolution
from proxy.discovery.resolver import RegistryHeartbeat
from proxy.discovery.source import InstanceSource
from proxy.discovery.sqlite_source import SqliteSource

log = logging.getLogger("tether.discovery")


class SourceSetupError(TetherError):
    """The configured discovery system cannot be used (bad nameservers, bad address)."""


@dataclass(frozen=True)
class Announcement:
    """What this sidecar tells discovery systems that carry announcements."""

    app_id: str
    namespace: str
    host_ip: str
    internal_port: int
    # The workers of one sidecar (--workers) share one registry row and one mDNS name,
    # announced on mDNS by one of them only; a lone sidecar leaves these as they are.
    registration_id: str | None = None
    announce: bool = True
    pid: int | None = None


def instance_source(
    component: str,
    here: Announcement,
    *,
    registry: SqliteRegistry | None,
    update_interval: float,
    dns: DnsResolution | None,
) -> InstanceSource:
    """The source for ``component``; ``registry`` is the opened SQLite registry for
    ``sqlite``, ``dns`` the settings of a DNS component."""
    if registry is not None:
        registration = Registration(
            # uuid4().hex's form, without loading uuid
            registration_id=here.registration_id or secrets.token_hex(16),
            app_id=here.app_id,
            namespace=here.namespace,
            endpoint=Endpoint(here.host_ip, here.internal_port),
        )
        return SqliteSource(registry, RegistryHeartbeat(registry, registration, update_interval))
    if component == MDNS:
        from proxy.discovery.mdns import MdnsSource

        try:
            source = MdnsSource(
                here.app_id,
                here.namespace,
                here.host_ip,
                here.internal_port,
                clock=time.monotonic,
                pid=here.pid,
                announce=here.announce,
            )
        except ValueError as exc:
            raise SourceSetupError(str(exc)) from exc
        if here.announce:
            log.info("name resolution: mdns, announcing %s:%d", here.host_ip, here.internal_port)
        return source
    if dns is None:
        raise SourceSetupError(f"name resolution {component!r} has no settings")
    from proxy.discovery.dns_lookup import DnsLookup, DnsLookupError
    from proxy.discovery.dns_source import DnsSource

    try:
        lookup = (
            DnsLookup.with_nameservers(dns.nameservers) if dns.nameservers else DnsLookup.system()
        )
    except (DnsLookupError, DnsNameError) as exc:
        raise SourceSetupError(f"name resolution {component}: {exc}") from exc
    # Dapr's rule: peers listen on the caller's own internal port.
    port = dns.port if dns.port is not None else here.internal_port
    log.info(
        "name resolution: %s, %s on port %d via %s",
        component,
        dns.template,
        port,
        ", ".join(lookup.nameservers),
    )
    return DnsSource(lookup, dns.template, port, srv=dns.srv)
