"""Asynchronous DNS queries for name resolution: SRV, and A plus AAAA, with their TTLs.

Built on dnspython's asyncio resolver, so a query never blocks the event loop. Outcomes
are typed, because callers act on them differently:

- ``NameNotFound`` (NXDOMAIN): the name does not exist, a definite negative;
- ``NoRecords`` (NODATA): the name exists but has no record of that type;
- ``DnsUnavailable``: no nameserver answered in time, or all of them failed (timeout,
  refused connection, SERVFAIL, REFUSED). Transient: keep what was known before.

A malformed name raises ``dns_names.InvalidDnsName`` (a ValueError) before any query.
There is no cache here (dnspython's is off): the caller caches by the TTLs returned.

A nameserver that is down costs up to the lookup lifetime, not an immediate refusal:
dnspython's asyncio transport uses unconnected UDP, which never sees ICMP
port-unreachable, so only the timeouts below bound it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from proxy.core.errors import TetherError
from proxy.discovery.dns_names import Nameserver, parse_nameservers, validate_dns_name

# One lookup (all nameservers, all retries) gives up after this long, so a dead DNS server
# costs a caller at most this much; the OS default (5 s x 2 attempts) would stall calls.
DEFAULT_LIFETIME = 2.0
# One try at one nameserver; with two servers the second still gets a turn in the lifetime.
DEFAULT_ATTEMPT_TIMEOUT = 1.0
# EDNS payload size of the DNS flag day 2020: large SRV sets fit without a TCP retry,
# small enough to avoid IP fragmentation.
EDNS_PAYLOAD = 1232
SYSTEM_RESOLV_CONF = Path("/etc/resolv.conf")


class DnsLookupError(TetherError):
    """A DNS lookup gave no usable answer."""


class NameNotFound(DnsLookupError):
    """NXDOMAIN: the name does not exist (a definite negative answer).

    ``negative_ttl`` is how long the answer may be cached (from the SOA), if the server said."""

    def __init__(self, name: str, negative_ttl: int | None) -> None:
        super().__init__(f"{name} does not exist (NXDOMAIN)")
        self.name = name
        self.negative_ttl = negative_ttl


class NoRecords(DnsLookupError):
    """NODATA: the name exists but has no record of the type asked for."""

    def __init__(self, name: str, rdtypes: str, negative_ttl: int | None) -> None:
        super().__init__(f"{name} has no {rdtypes} record")
        self.name = name
        self.rdtypes = rdtypes
        self.negative_ttl = negative_ttl


class DnsUnavailable(DnsLookupError):
    """No nameserver gave an answer: timeout, unreachable, SERVFAIL or REFUSED (transient)."""


class ResolverConfigError(DnsLookupError):
    """The system resolver configuration cannot be read or names no nameserver."""


@dataclass(frozen=True)
class SrvTarget:
    host: str  # without the trailing dot
    port: int
    priority: int
    weight: int


@dataclass(frozen=True)
class SrvAnswer:
    """SRV targets sorted by priority, then weight (highest first); ``ttl`` in seconds.

    Targets of ``.`` ("service decidedly not available", RFC 2782) are left out, so
    ``targets`` may be empty."""

    name: str
    targets: tuple[SrvTarget, ...]
    ttl: int


@dataclass(frozen=True)
class AddressAnswer:
    """IPv4 then IPv6 addresses, each sorted; ``ttl`` is the minimum over both answers."""

    name: str
    addresses: tuple[str, ...]
    ttl: int


class DnsLookup:
    """Runs queries on one dnspython resolver; build it with ``system`` or ``with_nameservers``.

    Names are queried as absolute names: a pod's ``search`` list with ``ndots:5`` would
    otherwise turn one lookup of a cluster name into several, each costing a round trip."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, *, search: bool = False) -> None:
        self._resolver = resolver
        self._search = search

    @classmethod
    def system(
        cls,
        *,
        resolv_conf: Path = SYSTEM_RESOLV_CONF,
        lifetime: float = DEFAULT_LIFETIME,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        search: bool = False,
    ) -> DnsLookup:
        """Use the nameservers of ``/etc/resolv.conf`` (as in a pod), with our timeouts."""
        try:
            resolver = dns.asyncresolver.Resolver(filename=str(resolv_conf), configure=True)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ResolverConfigError(f"{resolv_conf}: no usable nameserver ({exc})") from exc
        _tune(resolver, lifetime, attempt_timeout)
        return cls(resolver, search=search)

    @classmethod
    def with_nameservers(
        cls,
        nameservers: Sequence[str],
        *,
        lifetime: float = DEFAULT_LIFETIME,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
    ) -> DnsLookup:
        """Use the given ``host:port`` nameservers, tried in order (raises InvalidNameserver)."""
        parsed = parse_nameservers(nameservers)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.address, ns.port) for ns in parsed]
        _tune(resolver, lifetime, attempt_timeout)
        return cls(resolver)

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The servers asked, as ``host:port``, for logs and error messages."""
        shown: list[str] = []
        for ns in self._resolver.nameservers:
            if isinstance(ns, str):
                shown.append(str(Nameserver(ns, self._resolver.port)))
            elif isinstance(ns, dns.nameserver.Do53Nameserver):
                shown.append(str(Nameserver(ns.address, ns.port)))
            else:
                shown.append(str(ns))
        return tuple(shown)

    async def lookup_srv(self, name: str) -> SrvAnswer:
        """SRV records of ``name``, e.g. ``_dapr-internal._tcp.orders-dapr.ns.svc.<domain>``."""
        answer = await self._query(name, dns.rdatatype.SRV)
        targets = sorted(
            (
                SrvTarget(_host(record.target), record.port, record.priority, record.weight)
                for record in answer
                if isinstance(record, SRV) and record.target != dns.name.root
            ),
            key=lambda t: (t.priority, -t.weight, t.host, t.port),
        )
        return SrvAnswer(name, tuple(targets), _ttl(answer))

    async def lookup_addresses(self, name: str) -> AddressAnswer:
        """A and AAAA records of ``name``, asked for at the same time.

        Either family may be missing (NODATA); both missing raises ``NoRecords``. If either
        query fails transiently the whole lookup does (``DnsUnavailable``): half an answer
        would silently drop the instances of the other family."""
        outcomes = await asyncio.gather(
            self._query(name, dns.rdatatype.A),
            self._query(name, dns.rdatatype.AAAA),
            return_exceptions=True,
        )
        answers: list[dns.resolver.Answer] = []
        no_data: list[NoRecords] = []
        for outcome in outcomes:
            if isinstance(outcome, dns.resolver.Answer):
                answers.append(outcome)
            elif isinstance(outcome, NoRecords):
                no_data.append(outcome)
            else:
                # NXDOMAIN, unavailability, cancellation: the same for both, raise the first.
                raise outcome
        if not answers:
            ttls = [nd.negative_ttl for nd in no_data if nd.negative_ttl is not None]
            raise NoRecords(name, "A or AAAA", min(ttls) if ttls else None)
        v4 = sorted(
            {ipaddress.IPv4Address(r.address) for a in answers for r in a if isinstance(r, A)}
        )
        v6 = sorted(
            {ipaddress.IPv6Address(r.address) for a in answers for r in a if isinstance(r, AAAA)}
        )
        addresses = tuple(str(address) for address in [*v4, *v6])
        return AddressAnswer(name, addresses, min(_ttl(a) for a in answers))

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer:
        validate_dns_name(name)
        kind = dns.rdatatype.to_text(rdtype)
        try:
            return await self._resolver.resolve(name, rdtype, search=self._search)
        except dns.resolver.NXDOMAIN as exc:
            # dnspython keeps the responses in the exception's kwargs (its accessors are untyped).
            responses = list(exc.kwargs.get("responses", {}).values())
            raise NameNotFound(name, _negative_ttl(responses[0]) if responses else None) from exc
        except dns.resolver.NoAnswer as exc:
            raise NoRecords(name, kind, _negative_ttl(exc.kwargs.get("response"))) from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"no nameserver answered {kind} {name}: {exc}") from exc
        except dns.exception.Timeout as exc:
            raise DnsUnavailable(f"{kind} {name}: no answer in time ({exc})") from exc
        except dns.exception.DNSException as exc:
            # Anything else from the wire (e.g. YXDOMAIN) is not a definite answer either.
            raise DnsUnavailable(f"{kind} {name}: {exc}") from exc


def _tune(resolver: dns.asyncresolver.Resolver, lifetime: float, attempt_timeout: float) -> None:
    if lifetime <= 0 or attempt_timeout <= 0:
        raise ValueError("DNS timeouts must be positive")
    resolver.lifetime = lifetime
    resolver.timeout = min(attempt_timeout, lifetime)
    resolver.cache = None  # the caller caches, by the TTLs we return
    resolver.use_edns(0, 0, EDNS_PAYLOAD)


def _host(target: dns.name.Name) -> str:
    return target.to_text(omit_final_dot=True)


def _ttl(answer: dns.resolver.Answer) -> int:
    # The minimum over the CNAME chain and the final records: the whole answer expires then.
    return int(answer.chaining_result.minimum_ttl)


def _negative_ttl(response: object) -> int | None:
    """RFC 2308: a negative answer may be cached for min(SOA TTL, SOA MINIMUM)."""
    if not isinstance(response, dns.message.Message):
        return None
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return min(int(rrset.ttl), *(int(soa.minimum) for soa in rrset))
    return None
