"""The pure half of mDNS name resolution: the names daprd puts on the wire, the TXT
check, and turning cached records into instances. No sockets; see ``mdns.py``.

Names (as daprd's ``github.com/grandcat/zeroconf`` builds them; see ``mdns.py``):

- service (browsed, the PTR owner): ``<appId>.local.`` (no ``_x._tcp`` labels);
- instance (the PTR target, owner of SRV and TXT): ``<hostname>:<pid>.<appId>.local.``;
- TXT: one character-string, the app ID.

DNS names compare case-insensitively here (RFC 6762 section 16), so every lookup key is
lowercased; names are written with the case they were given.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from proxy.discovery.registry import Endpoint
from proxy.discovery.source import Instances

DOMAIN = "local."
MAX_LABEL = 63  # bytes, RFC 1035
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidMdnsName(ValueError):
    """An app ID or host name that cannot be an mDNS label."""


def _check_label(text: str, what: str) -> None:
    if not text:
        raise InvalidMdnsName(f"{what} is empty")
    if "." in text:
        raise InvalidMdnsName(f"{what} {text!r} contains a dot")
    if _CONTROL.search(text):
        raise InvalidMdnsName(f"{what} {text!r} contains a control character")
    if len(text.encode()) > MAX_LABEL:
        raise InvalidMdnsName(f"{what} {text!r} is longer than {MAX_LABEL} bytes")


def service_name(app_id: str) -> str:
    """What daprd browses for and registers under: ``orders`` -> ``orders.local.``."""
    _check_label(app_id, "app ID")
    return f"{app_id}.{DOMAIN}"


def instance_label(hostname: str, pid: int, app_id: str) -> str:
    """daprd's instance: ``<hostname>:<pid>`` (the OS host name as it is, dots included:
    grandcat writes the name in presentation form, so a dot splits labels there too).

    python-zeroconf checks that everything before ``.local.`` of a non-strict name fits
    63 bytes, so a long host name is cut to make ``<label>.<appId>`` fit; nobody matches
    on the instance name (daprd reads only the PTR, SRV, TXT and address records)."""
    suffix = f":{pid}"
    room = MAX_LABEL - len(f"{suffix}.{app_id}".encode())
    if room < 1:
        raise InvalidMdnsName(f"app ID {app_id!r} is too long to register over mDNS")
    host = hostname.encode()[:room].decode(errors="ignore") or "tether"
    label = f"{host}{suffix}"
    if _CONTROL.search(label):
        raise InvalidMdnsName(f"instance name {label!r} contains a control character")
    return label


def instance_name(hostname: str, pid: int, app_id: str) -> str:
    return f"{instance_label(hostname, pid, app_id)}.{service_name(app_id)}"


def host_target(hostname: str, address: str) -> str:
    """The SRV target (the owner of our A/AAAA record): ``<host>-<address>.local.``.

    daprd uses ``<hostname>.local.``, but on a LAN where two machines share a host name
    (cloned images, or network namespaces of one host) their A records would then flush
    each other from every cache (RFC 6762 section 10.2). A name per address cannot
    collide; daprd matches A records to the SRV target of the same packet, so it does
    not care what the target is."""
    first = hostname.split(".", 1)[0] or "tether"
    ip = ipaddress.ip_address(address)
    spelled = str(ip).replace(".", "-").replace(":", "-")
    label = f"{first}-{spelled}"
    if len(label.encode()) > MAX_LABEL:
        label = f"tether-{spelled}"
    _check_label(label, "host label")
    return f"{label}.{DOMAIN}"


def txt_payload(app_id: str) -> bytes:
    """TXT rdata daprd sends: one character-string holding the app ID."""
    raw = app_id.encode()
    if len(raw) > 255:
        raise InvalidMdnsName(f"app ID {app_id!r} does not fit a TXT string")
    return bytes([len(raw)]) + raw


def txt_strings(rdata: bytes) -> list[str]:
    """Split TXT rdata into its character-strings (undecodable bytes replaced);
    a truncated last string is dropped."""
    strings = []
    at = 0
    while at < len(rdata):
        length = rdata[at]
        chunk = rdata[at + 1 : at + 1 + length]
        if len(chunk) < length:
            break
        strings.append(chunk.decode(errors="replace"))
        at += 1 + length
    return strings


def txt_names_app(strings: Sequence[str], app_id: str) -> bool:
    """daprd's check: it walks the strings and stops at the first that is not the app
    ID, so in effect the first string must be the app ID (and an empty TXT never is)."""
    return bool(strings) and strings[0] == app_id


@dataclass(frozen=True, slots=True)
class Service:
    """An SRV record: where an instance listens. ``expires`` on the caller's clock."""

    target: str
    port: int
    expires: float


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    expires: float


def pick_address(addresses: Iterable[Address], now: float) -> Address | None:
    """IPv4 first (lowest, for a stable choice), IPv6 as the fallback, as daprd does.
    Link-local IPv6 is skipped: it cannot be dialled without its interface."""
    v4: list[tuple[ipaddress.IPv4Address, Address]] = []
    v6: list[tuple[ipaddress.IPv6Address, Address]] = []
    for record in addresses:
        if record.expires <= now:
            continue
        try:
            ip = ipaddress.ip_address(record.address)
        except ValueError:
            continue
        if isinstance(ip, ipaddress.IPv4Address):
            if not ip.is_unspecified:
                v4.append((ip, record))
        elif not ip.is_link_local and not ip.is_unspecified:
            v6.append((ip, record))
    if v4:
        return min(v4, key=lambda pair: pair[0])[1]
    if v6:
        return min(v6, key=lambda pair: pair[0])[1]
    return None


@dataclass(frozen=True, slots=True)
class Found:
    """One live instance and until when every record it rests on is valid."""

    instance: str
    endpoint: Endpoint
    expires: float


def live_instances(
    app_id: str,
    instances: Iterable[str],
    services: Mapping[str, Service],
    texts: Mapping[str, tuple[Sequence[str], float]],
    addresses: Mapping[str, Sequence[Address]],
    now: float,
) -> list[Found]:
    """The instances (PTR targets) that have a live SRV, a live TXT naming ``app_id``
    and a live address for the SRV target. Keys of the mappings are lowercased names.

    A record whose expiry is at or before ``now`` counts as absent: that is how both
    goodbyes (TTL 0) and instances that vanished without one (TTL ran out) disappear.
    Sorted by instance name; an endpoint announced by two instances appears once."""
    found: dict[Endpoint, Found] = {}
    for name in sorted({name.lower() for name in instances}):
        service = services.get(name)
        text = texts.get(name)
        if service is None or service.expires <= now or not 0 < service.port < 65536:
            continue
        if text is None or text[1] <= now or not txt_names_app(text[0], app_id):
            continue
        address = pick_address(addresses.get(service.target.lower(), ()), now)
        if address is None:
            continue
        endpoint = Endpoint(address.address, service.port)
        expires = min(service.expires, text[1], address.expires)
        previous = found.get(endpoint)
        if previous is None or previous.expires < expires:
            found[endpoint] = Found(name, endpoint, expires)
    return sorted(found.values(), key=lambda item: item.instance)


def answer(found: Sequence[Found], now: float, answer_ttl: float) -> Instances:
    """The resolver's answer: the endpoints, trusted for ``answer_ttl`` at most and never
    past the first record to expire."""
    ttl = min([answer_ttl, *(item.expires - now for item in found)])
    return Instances(tuple(item.endpoint for item in found), max(ttl, 0.0))
