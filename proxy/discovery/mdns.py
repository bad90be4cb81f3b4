"""mDNS name resolution (Dapr's standalone default): sidecars on one LAN find each other
with no DNS server, tether and daprd alike.

What daprd does (read from components-contrib ``nameresolution/mdns/mdns.go`` and
``github.com/grandcat/zeroconf`` v1 ``service.go``, ``server.go``, ``client.go``):

- **Registration.** ``RegisterProxy(instance, appID, "local.", internalPort,
  hostname, [hostAddress], [appID])`` with instance ``<os.Hostname()>:<pid>``.
  grandcat names the service ``<service>.<domain>.`` with no ``_x._tcp`` labels, so on the
  wire app ``orders`` is PTR ``orders.local.`` -> ``<host>:<pid>.orders.local.``; that
  name owns an SRV (priority 0, weight 0, the internal gRPC port, target
  ``<hostname>.local.``) and a TXT holding one string, the app ID; the target owns one A
  (or AAAA) record, the host address. TTLs: 3200 s for PTR, SRV and TXT, 120 s for the
  address. A PTR question for ``orders.local.`` is answered with the PTR and, in the
  same packet, the SRV, TXT and address records (QU questions by unicast, others by
  multicast). On shutdown the same records go out with TTL 0 (goodbye).
- **Resolution.** A PTR query (class IN, no known answers) for ``orders.local.`` sent to
  224.0.0.251:5353 (and ff02::fb) from port 5353; each response packet is read on its
  own: PTR, SRV and TXT whose names match (case-sensitively), then A/AAAA records whose
  owner equals the SRV target *in that packet*; an entry with no address is ignored and
  TTL 0 drops it. The TXT is walked until a string differs from the app ID, so the first
  string must be the app ID. The first IPv4 address is used, IPv6 as the fallback.
  daprd waits 1 s for a first answer, keeps addresses 60 s and re-browses every 30 s;
  record TTLs are otherwise ignored. **The namespace is ignored**: app IDs are global.

What tether does, on python-zeroconf (``AsyncZeroconf`` on the running event loop):

- **Registers the same names, TXT and port**, so daprd finds tether. The one
  difference is the SRV target: ``<host>-<address>.local.`` (see
  ``mdns_records.host_target``), because machines sharing a host name would otherwise
  flush each other's A record from every cache; daprd does not look at the target's
  name. python-zeroconf refuses service types without ``_tcp``/``_udp`` unless asked
  not to be strict (``strict=False`` when registering; ``ServiceInfo`` checks the
  instance name non-strictly itself). Its PTR answers carry SRV, TXT and A as
  additionals in the same packet (RFC 6763 section 12.1), which is what grandcat needs.
- **Short TTLs: 15 s on every record** (``RECORD_TTL``) instead of daprd's 3200/120, so
  a tether that dies without a goodbye (SIGKILL, power cut) leaves other tethers'
  caches within 15 s. daprd ignores TTLs, so this costs it nothing.
- **Goodbyes both ways.** ``close`` sends every record with TTL 0 (python-zeroconf
  repeats it three times, 125 ms apart) and once more 1.3 s later: an answer that
  python-zeroconf had already queued (its multicast answers wait 20-500 ms, or over a
  second when rate-limited) would otherwise re-announce the instance right after its
  goodbye, and receivers drop identical packets within 0.8 s. So ``close`` takes about
  1.6 s. A goodbye received removes the instance from the cache at once.
- **Browsing from a live cache.** A lookup reads python-zeroconf's record cache; an
  instance counts only while its SRV, its TXT (first string = the app ID) and an
  address for its SRV target are all unexpired. Record TTLs are honoured. The PTR TTL
  is not useful for that: python-zeroconf raises incoming PTR TTLs below 1125 s to
  1125 s, hence the SRV/TXT/address rule.
- **Refresh.** Every app looked up in the last ``WATCH_WINDOW`` (120 s) is re-queried
  every ``REFRESH_INTERVAL`` to 1.5 times it (5 to 7.5 s, so a lost round still keeps a
  live instance within the 15 s TTL) with a PTR question without known answers, so
  every instance answers with fresh SRV/TXT/address records. A lookup therefore
  normally costs no network round trip at all.
- **Cold lookup** (nothing cached): one query, repeated once halfway through the
  browse timeout (1 s, as daprd), then up to ``SETTLE`` (0.25 s) more after the first
  instance appears so the others, whose responders wait 20-120 ms before answering
  (RFC 6762 section 6), are in the same answer. Nothing at all within the timeout is
  ``AppNotFound``: on mDNS silence is the only negative answer there is.
- **Answer TTL 2 s** (``ANSWER_TTL``) to the resolver, never beyond the first record
  to expire: re-reading the cache is cheap, and a goodbye reaches the calls within
  about two seconds.
- **Limits.** A daprd that dies without a goodbye stays in tether's cache until its
  records expire: 120 s for its A record (3200 s if another live daprd on the same host
  keeps answering for the same host name); outlier ejection covers that window. Two
  daprd machines with the same host name flush each other's A record in every cache
  (grandcat's cache-flush announcements); daprd itself shares the problem.
  Multicast goes over IPv4 (224.0.0.251) unless ``interfaces`` lists an IPv6 address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

from zeroconf import Error as ZeroconfError
from zeroconf import InterfaceChoice, Zeroconf, current_time_millis

# The record classes are re-exported by ``zeroconf`` itself only implicitly (for
# backwards compatibility), so mypy wants them from where they live.
from zeroconf._dns import DNSAddress, DNSPointer, DNSQuestion, DNSService, DNSText
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from proxy.discovery import mdns_records
from proxy.discovery.mdns_records import Address, InvalidMdnsName, Service
from proxy.discovery.source import AppNotFound, Instances, SourceUnavailable

log = logging.getLogger(__name__)

RECORD_TTL = 15  # seconds, on every record we announce
REFRESH_INTERVAL = 5.0
BROWSE_TIMEOUT = 1.0  # daprd's browseOneTimeout
SETTLE = 0.25
ANSWER_TTL = 2.0
WATCH_WINDOW = 120.0
LATE_GOODBYE_DELAY = 1.3  # seconds after the goodbyes, see close()
MAX_WATCHED = 1024  # app IDs come from callers: bound what is refreshed
_QUERY_FLAGS = 0  # a standard query; mDNS ignores the ID
# DNS numbers as plain ints: python-zeroconf's compiled classes refuse int subclasses
# (dnspython's RdataType) in some versions.
IN, A_TYPE, PTR, TXT, AAAA, SRV = 1, 1, 12, 16, 28, 33
_R = TypeVar("_R", DNSService, DNSText)


class MdnsSource:
    """Registers this sidecar on mDNS as daprd does and resolves app IDs by browsing."""

    def __init__(
        self,
        app_id: str,
        namespace: str,
        host_address: str,
        internal_port: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        interfaces: Sequence[str] | None = None,
        hostname: str | None = None,
        pid: int | None = None,
        record_ttl: int = RECORD_TTL,
        refresh_interval: float = REFRESH_INTERVAL,
        browse_timeout: float = BROWSE_TIMEOUT,
        answer_ttl: float = ANSWER_TTL,
        announce: bool = True,
    ) -> None:
        try:
            ipaddress.ip_address(host_address)
        except ValueError:
            raise ValueError(f"mdns: host address {host_address!r} is not an IP address") from None
        if not 0 < internal_port < 65536:
            raise ValueError(f"mdns: internal port {internal_port} is out of range")
        for interface in interfaces or ():
            try:
                ipaddress.ip_address(interface)
            except ValueError:
                raise ValueError(f"mdns: interface {interface!r} is not an IP address") from None
        host = hostname if hostname is not None else socket.gethostname()
        self.app_id = app_id
        self.namespace = namespace  # kept for logs only: mDNS app IDs are global (Dapr)
        self.host_address = host_address
        self.internal_port = internal_port
        self.service_type = mdns_records.service_name(app_id)
        self.instance = mdns_records.instance_name(
            host, os.getpid() if pid is None else pid, app_id
        )
        self.server = mdns_records.host_target(host, host_address)
        self._clock = clock
        self._interfaces = list(interfaces) if interfaces else None
        self._record_ttl = record_ttl
        self._refresh_interval = refresh_interval
        self._browse_timeout = browse_timeout
        self._answer_ttl = answer_ttl
        # False: look others up only (the workers of one sidecar but one announce it).
        self._announce = announce
        self._aiozc: AsyncZeroconf | None = None
        try:  # built here so that a name python-zeroconf refuses fails at configuration
            self._announcement = AsyncServiceInfo(
                self.service_type,
                self.instance,
                port=internal_port,
                properties=mdns_records.txt_payload(app_id),
                server=self.server,
                host_ttl=record_ttl,
                other_ttl=record_ttl,
                parsed_addresses=[host_address],
            )
        except ZeroconfError as exc:
            raise ValueError(f"mdns: cannot announce {self.instance}: {exc!r}") from exc
        self._info: AsyncServiceInfo | None = None  # once registered
        self._watched: OrderedDict[str, float] = OrderedDict()  # app ID -> last lookup
        self._queried: dict[str, float] = {}  # app ID -> last query sent
        self._refresher: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the multicast sockets, probe and announce this instance."""
        zc = self._zeroconf()
        if not self._announce:
            return
        assert self._aiozc is not None
        info = self._announcement
        try:
            await zc.async_wait_for_start()
            # allow_name_change: a stale record of an earlier process with our pid must
            # not stop the sidecar; the instance name matters to nobody (daprd neither).
            await self._aiozc.async_register_service(info, allow_name_change=True, strict=False)
        except (OSError, ZeroconfError) as exc:
            raise SourceUnavailable(f"mdns: cannot register {self.instance}: {exc}") from exc
        self._info = info
        if info.name != self.instance:
            log.warning("mdns: instance name %s was taken, registered %s", self.instance, info.name)
        log.info(
            "mdns: announced %s -> %s:%d",
            self.app_id,
            self.host_address,
            self.internal_port,
        )
        self._start_refresher()

    async def close(self) -> None:
        """Send goodbyes (TTL 0) for our records, stop refreshing, close the sockets."""
        if self._closed:
            return
        self._closed = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        aiozc, self._aiozc = self._aiozc, None
        if aiozc is None:
            return
        try:
            if self._info is not None:
                goodbyes = await aiozc.async_unregister_service(self._info)
                await goodbyes
                # Answers python-zeroconf had queued before the goodbye (aggregated or
                # rate-limited multicast, up to ~1.2 s late) still carry our records and
                # would bring us back to life in every cache: say goodbye once more after
                # they are out (and past receivers' 0.8 s duplicate-packet filter).
                await asyncio.sleep(LATE_GOODBYE_DELAY)
                zc = aiozc.zeroconf
                zc.async_send(zc.generate_service_broadcast(self._info, 0))
        except (OSError, ZeroconfError) as exc:
            log.warning("mdns: goodbye for %s not sent: %s", self.instance, exc)
        finally:
            await aiozc.async_close()

    # -- lookups -----------------------------------------------------------------

    async def lookup(self, app_id: str, namespace: str) -> Instances:
        """Instances of ``app_id`` (``namespace`` ignored, as in Dapr)."""
        try:
            service = mdns_records.service_name(app_id)
        except InvalidMdnsName as exc:
            raise AppNotFound(f"{app_id!r} cannot be found over mDNS: {exc}") from exc
        zc = self._zeroconf()
        self._watch(app_id)
        found = self._read(app_id, service, zc)
        if found:
            if self._clock() - self._queried.get(app_id, -1e9) >= self._refresh_interval:
                self._query(app_id, service, zc)
            return mdns_records.answer(found, _zc_now(), self._answer_ttl)
        found = await self._browse(app_id, service, zc)
        if not found:
            raise AppNotFound(
                f"no mDNS answer for app {app_id!r} within {self._browse_timeout:g}s",
                ttl=self._answer_ttl,
            )
        return mdns_records.answer(found, _zc_now(), self._answer_ttl)

    async def _browse(self, app_id: str, service: str, zc: Zeroconf) -> list[mdns_records.Found]:
        started = self._clock()
        deadline = started + self._browse_timeout
        resend_at: float | None = started + self._browse_timeout / 2
        settle_until: float | None = None
        self._query(app_id, service, zc)
        while True:
            found = self._read(app_id, service, zc)
            now = self._clock()
            if found and settle_until is None:
                settle_until = min(deadline, now + SETTLE)
            if settle_until is not None:
                if now >= settle_until:
                    return found
                wake = settle_until
            else:
                if now >= deadline:
                    return []
                if resend_at is not None and now >= resend_at:
                    self._query(app_id, service, zc)
                    resend_at = None
                wake = deadline if resend_at is None else resend_at
            # Woken early by every cache update; otherwise at the next step.
            await zc.async_wait(max(wake - now, 0.001) * 1000)

    def _read(self, app_id: str, service: str, zc: Zeroconf) -> list[mdns_records.Found]:
        """The live instances of ``app_id`` in python-zeroconf's cache (no I/O)."""
        now_ms = current_time_millis()
        cache = zc.cache
        names = [
            record.alias
            for record in cache.async_all_by_details(service, PTR, IN)
            if isinstance(record, DNSPointer) and not record.is_expired(now_ms)
        ]
        services: dict[str, Service] = {}
        texts: dict[str, tuple[Sequence[str], float]] = {}
        addresses: dict[str, list[Address]] = {}
        for name in names:
            key = name.lower()
            srv = _newest(cache.async_all_by_details(name, SRV, IN), DNSService, now_ms)
            if srv is not None:
                services[key] = Service(srv.server, srv.port, _expires(srv))
                target = srv.server.lower()
                if target not in addresses:
                    addresses[target] = [
                        Address(_address_text(record), _expires(record))
                        for kind in (A_TYPE, AAAA)
                        for record in cache.async_all_by_details(srv.server, kind, IN)
                        if isinstance(record, DNSAddress) and not record.is_expired(now_ms)
                    ]
            txt = _newest(cache.async_all_by_details(name, TXT, IN), DNSText, now_ms)
            if txt is not None:
                texts[key] = (mdns_records.txt_strings(txt.text), _expires(txt))
        return mdns_records.live_instances(
            app_id, names, services, texts, addresses, now_ms / 1000.0
        )

    def _query(self, app_id: str, service: str, zc: Zeroconf) -> None:
        """A PTR question for the app, without known answers so that every instance
        answers (with its SRV, TXT and address records as additionals)."""
        out = DNSOutgoing(_QUERY_FLAGS)
        out.add_question(DNSQuestion(service, PTR, IN))
        zc.async_send(out)
        self._queried[app_id] = self._clock()

    # -- refreshing --------------------------------------------------------------

    def _watch(self, app_id: str) -> None:
        self._watched[app_id] = self._clock()
        self._watched.move_to_end(app_id)
        while len(self._watched) > MAX_WATCHED:
            forgotten, _ = self._watched.popitem(last=False)
            self._queried.pop(forgotten, None)
        self._start_refresher()

    def due_for_refresh(self, now: float) -> list[str]:
        """Apps looked up within the watch window whose last query is a refresh
        interval old; drops the apps nobody asked for lately."""
        for app_id in [a for a, seen in self._watched.items() if now - seen > WATCH_WINDOW]:
            del self._watched[app_id]
            self._queried.pop(app_id, None)
        return [
            app_id
            for app_id in self._watched
            if now - self._queried.get(app_id, -1e9) >= self._refresh_interval
        ]

    def _start_refresher(self) -> None:
        if self._refresher is None and not self._closed:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval / 2)
            aiozc = self._aiozc
            if aiozc is None:
                return
            for app_id in self.due_for_refresh(self._clock()):
                self._query(app_id, mdns_records.service_name(app_id), aiozc.zeroconf)

    def _zeroconf(self) -> Zeroconf:
        """The running python-zeroconf instance, opened on first use."""
        if self._closed:
            raise SourceUnavailable("mdns: the source is closed")
        if self._aiozc is None:
            interfaces = self._interfaces if self._interfaces else InterfaceChoice.All
            try:
                self._aiozc = AsyncZeroconf(interfaces=interfaces)
            except (OSError, ZeroconfError) as exc:
                raise SourceUnavailable(f"mdns: cannot open multicast sockets: {exc}") from exc
        zc = self._aiozc.zeroconf
        if zc.done:
            raise SourceUnavailable("mdns: the multicast sockets are closed")
        return zc


def _zc_now() -> float:
    return current_time_millis() / 1000.0


def _expires(record: DNSAddress | DNSService | DNSText) -> float:
    """Expiry on python-zeroconf's clock, in seconds."""
    return record.get_expiration_time(100) / 1000.0


def _newest(records: Sequence[object], kind: type[_R], now_ms: float) -> _R | None:
    """The unexpired record of ``kind`` that expires last (a unique record normally has
    one; after a cache flush the old one may linger for a second)."""
    live = [r for r in records if isinstance(r, kind) and not r.is_expired(now_ms)]
    return max(live, key=lambda r: r.get_expiration_time(100), default=None)


def _address_text(record: DNSAddress) -> str:
    return str(ipaddress.ip_address(record.address))
