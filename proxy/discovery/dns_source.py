"""DNS as an ``InstanceSource``: Dapr's ``kubernetes`` and ``nameformat`` resolvers and
tether's ``dns`` resolver.

The app's DNS name comes from a template over the app ID and namespace. With ``srv``
(tether's ``dns``), ``_dapr-internal._tcp.<name>`` is asked first: each SRV target is
resolved to its addresses and gives an instance per address on the record's port. A
name with no SRV records (NXDOMAIN or NODATA) falls back to its A and AAAA records;
every address is an instance on ``port`` (Dapr's rule: the caller's own internal gRPC
port, the same for every sidecar of a cluster).

SRV priorities and weights: only the lowest priority whose targets resolve is used
(higher ones are fallbacks, RFC 2782); weights are not, the balancer spreads calls by
load instead.

Outcomes map onto the resolver's: NXDOMAIN and "no records" are ``AppNotFound`` (with
the server's negative TTL), a server that does not answer is ``SourceUnavailable``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from proxy.discovery.dns_lookup import (
    AddressAnswer,
    DnsLookup,
    DnsUnavailable,
    NameNotFound,
    NoRecords,
    SrvTarget,
)
from proxy.discovery.dns_names import DnsNameError, app_name, srv_name
from proxy.discovery.registry import Endpoint
from proxy.discovery.source import AppNotFound, Instances, SourceUnavailable


class DnsSource:
    """Instances of an app from DNS; nothing to announce (others maintain the records)."""

    def __init__(self, lookup: DnsLookup, template: str, port: int, *, srv: bool) -> None:
        self._lookup = lookup
        self._template = template
        self._port = port
        self._srv = srv

    def name(self, app_id: str, namespace: str) -> str:
        """The DNS name asked for an app (raises DnsNameError)."""
        return app_name(self._template, app_id, namespace)

    async def lookup(self, app_id: str, namespace: str) -> Instances:
        try:
            name = self.name(app_id, namespace)
        except DnsNameError as exc:
            raise AppNotFound(f"no DNS name can be formed: {exc}") from exc
        if self._srv:
            found = await self._lookup_srv(name)
            if found is not None:
                return found
        try:
            answer = await self._lookup.lookup_addresses(name)
        except (NameNotFound, NoRecords) as exc:
            raise AppNotFound(str(exc), _negative_ttl(exc)) from exc
        except DnsUnavailable as exc:
            raise SourceUnavailable(str(exc)) from exc
        endpoints = [Endpoint(address, self._port) for address in answer.addresses]
        return Instances(endpoints, float(answer.ttl))

    async def _lookup_srv(self, name: str) -> Instances | None:
        """The instances the SRV records give, or None when there are none (use A/AAAA)."""
        service = srv_name(name)
        try:
            answer = await self._lookup.lookup_srv(service)
        except (NameNotFound, NoRecords):
            return None
        except DnsUnavailable as exc:
            raise SourceUnavailable(str(exc)) from exc
        if not answer.targets:
            raise AppNotFound(f"{service}: the service is decidedly not available (SRV '.')")
        ttl = answer.ttl
        for priority in sorted({t.priority for t in answer.targets}):
            group = [t for t in answer.targets if t.priority == priority]
            endpoints, least_ttl = await self._resolve_targets(group)
            if endpoints:
                return Instances(endpoints, float(min(ttl, least_ttl)))
        raise AppNotFound(f"{service}: no SRV target has an address")

    async def _resolve_targets(self, targets: Sequence[SrvTarget]) -> tuple[list[Endpoint], int]:
        hosts = list(dict.fromkeys(t.host for t in targets))
        outcomes = await asyncio.gather(
            *(self._addresses(host) for host in hosts), return_exceptions=True
        )
        resolved: dict[str, AddressAnswer] = {}
        for host, outcome in zip(hosts, outcomes, strict=True):
            if isinstance(outcome, AddressAnswer):
                resolved[host] = outcome
            elif isinstance(outcome, DnsUnavailable):
                # Half an answer would silently drop instances: keep the last good one.
                raise SourceUnavailable(str(outcome)) from outcome
            elif not isinstance(outcome, NameNotFound | NoRecords):
                raise outcome  # cancellation or a bug: not ours to hide
        endpoints = [
            Endpoint(address, target.port)
            for target in targets
            if target.host in resolved
            for address in resolved[target.host].addresses
        ]
        ttls = [answer.ttl for answer in resolved.values()]
        return list(dict.fromkeys(endpoints)), min(ttls) if ttls else 0

    async def _addresses(self, host: str) -> AddressAnswer:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return await self._lookup.lookup_addresses(host)
        return AddressAnswer(host, (str(literal),), 2**31 - 1)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _negative_ttl(exc: NameNotFound | NoRecords) -> float | None:
    return float(exc.negative_ttl) if exc.negative_ttl is not None else None
