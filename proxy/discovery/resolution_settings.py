"""The validated name-resolution settings the sidecar builds its resolver from.

Plain frozen values (filled by ``proxy.config`` from the Configuration file and the
flags); the policies of the cache, the outlier detector and the peer channels keep
their own defaults, documented where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.discovery.dns_names import DEFAULT_CLUSTER_DOMAIN, KUBERNETES_TEMPLATE

SQLITE = "sqlite"
KUBERNETES = "kubernetes"
NAMEFORMAT = "nameformat"
DNS = "dns"
MDNS = "mdns"
# Components whose instances come from DNS and listen on the caller's own internal port.
DNS_COMPONENTS = (KUBERNETES, NAMEFORMAT, DNS)
# The internal gRPC port every sidecar of a cluster uses when the flag is not given:
# the one Dapr's sidecar injector sets.
CLUSTER_INTERNAL_PORT = 50002
# tether's ``dns`` component looks here unless ``name`` says otherwise: Dapr's headless
# Service per app, whose named port ``dapr-internal`` has SRV records in cluster DNS.
DEFAULT_DNS_NAME = "{appid}-dapr.{namespace}.svc.cluster.local"


@dataclass(frozen=True)
class DnsResolution:
    """How a DNS-based component finds an app.

    ``template`` uses ``{appid}`` and ``{namespace}``; ``port`` None means the caller's
    own internal gRPC port; ``srv`` asks ``_dapr-internal._tcp.<name>`` first;
    ``nameservers`` (``host:port``) replace ``/etc/resolv.conf`` when given."""

    template: str
    port: int | None = None
    srv: bool = False
    nameservers: tuple[str, ...] = ()


def kubernetes_resolution(cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> DnsResolution:
    """Dapr's kubernetes resolver: ``<appid>-dapr.<namespace>.svc.<clusterDomain>``."""
    return DnsResolution(KUBERNETES_TEMPLATE.replace("{clusterDomain}", cluster_domain))


@dataclass(frozen=True)
class PeerLiveness:
    """How fast a silent peer is noticed (seconds): a connection attempt gives up after
    ``connect_timeout``; an open connection is pinged every ``keepalive_time`` and
    dropped, failing its calls, when a ping is not answered in ``keepalive_timeout``."""

    connect_timeout: float = 2.0
    keepalive_time: float = 10.0  # daprd's; daprd peers refuse pings closer than 8 s
    keepalive_timeout: float = 5.0  # daprd's
