"""Pure helpers for DNS-based resolution: nameserver addresses ("host:port"), name templates
such as ``{appid}-dapr.{namespace}.svc.{clusterDomain}``, and the shape of DNS names.

No I/O here: the queries themselves are in ``dns_lookup``.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_DNS_PORT = 53
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
# Dapr's kubernetes resolver: one headless Service ``<appid>-dapr`` per app.
KUBERNETES_TEMPLATE = "{appid}-dapr.{namespace}.svc.{clusterDomain}"
# The named port of that Service is ``dapr-internal``, so Kubernetes DNS serves SRV records here.
INTERNAL_SRV_PREFIX = "_dapr-internal._tcp"
# Placeholders a user's ``format`` / ``name`` template may use (Dapr's nameformat has {appid}).
TEMPLATE_FIELDS: frozenset[str] = frozenset({"appid", "namespace"})
REQUIRED_TEMPLATE_FIELDS: frozenset[str] = frozenset({"appid"})

MAX_NAME_LENGTH = 253  # RFC 1035, written form without the trailing dot
MAX_LABEL_LENGTH = 63
# Letters, digits, hyphen, plus underscore for service labels such as ``_dapr-internal``.
_LABEL = re.compile(r"[A-Za-z0-9_-]+")


class DnsNameError(ValueError):
    """A nameserver address, a name template or a DNS name is malformed."""


class InvalidNameserver(DnsNameError):
    """A nameserver is not ``address[:port]`` with an IP literal and a valid port.

    ``problems`` lists every bad entry when several were checked at once."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


class InvalidTemplate(DnsNameError):
    """A name template has unknown or malformed placeholders, or cannot form a DNS name."""


class InvalidDnsName(DnsNameError):
    """A DNS name (or one label of it) is empty, too long or holds characters DNS names cannot."""


@dataclass(frozen=True)
class Nameserver:
    """A DNS server given by IP literal and port."""

    address: str
    port: int = DEFAULT_DNS_PORT

    def __str__(self) -> str:
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def parse_nameserver(text: str) -> Nameserver:
    """Parse ``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]`` or ``[::1]:5353``.

    Only IP literals: a nameserver given by name would need DNS to find DNS."""
    value = text.strip()
    if not value:
        raise InvalidNameserver("a nameserver is empty")
    port_text: str | None = None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise InvalidNameserver(f"{text!r}: missing ']' after the IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise InvalidNameserver(f"{text!r}: expected ':port' after ']'")
            port_text = rest[1:]
        address = _ip_literal(text, host)
        if address.version != 6:
            raise InvalidNameserver(f"{text!r}: brackets are only for IPv6 addresses")
    elif value.count(":") > 1:
        # Bare IPv6 (its own colons make a port ambiguous): write [addr]:port for a port.
        address = _ip_literal(text, value)
    else:
        host, colon, port_part = value.partition(":")
        if colon:
            port_text = port_part
        address = _ip_literal(text, host)
    port = DEFAULT_DNS_PORT if port_text is None else _port(text, port_text)
    return Nameserver(str(address), port)


def parse_nameservers(texts: Sequence[str]) -> tuple[Nameserver, ...]:
    """Parse a whole list, reporting every bad entry (with its index) in one error."""
    if not texts:
        raise InvalidNameserver("the nameserver list is empty")
    parsed: list[Nameserver] = []
    problems: list[str] = []
    for index, text in enumerate(texts):
        try:
            parsed.append(parse_nameserver(text))
        except InvalidNameserver as exc:
            problems.append(f"[{index}] {exc}")
    if problems:
        raise InvalidNameserver("; ".join(problems), problems)
    return tuple(parsed)


def _ip_literal(text: str, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise InvalidNameserver(
            f"{text!r}: {host!r} is not an IPv4 or IPv6 address"
            " (nameservers are given by address, not by name)"
        ) from None


def _port(text: str, port_text: str) -> int:
    if not port_text.isascii() or not port_text.isdigit():
        raise InvalidNameserver(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidNameserver(f"{text!r}: port {port} is outside 1-65535")
    return port


def template_fields(template: str) -> tuple[str, ...]:
    """The placeholder names of ``template`` in order (``{{`` and ``}}`` are literal braces).

    Only bare names are placeholders: no positional ``{}``, attribute, index, conversion or
    format spec, so rendering can never reach into the values."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidTemplate(f"{template!r}: {exc}") from None
    fields: list[str] = []
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier():
            raise InvalidTemplate(f"{template!r}: {{{field}}} is not a placeholder name")
        if spec or conversion:
            raise InvalidTemplate(f"{template!r}: {{{field}}} may not carry '!' or ':' parts")
        fields.append(field)
    return tuple(fields)


def validate_template(
    template: str,
    *,
    fields: Collection[str] = TEMPLATE_FIELDS,
    required: Collection[str] = REQUIRED_TEMPLATE_FIELDS,
) -> None:
    """Check a name template once, at configuration time: known placeholders only, the
    required ones present, and the rendered result shaped like a DNS name."""
    found = template_fields(template)
    unknown = sorted(set(found) - set(fields))
    if unknown:
        allowed = ", ".join("{" + name + "}" for name in sorted(fields))
        names = ", ".join("{" + name + "}" for name in unknown)
        raise InvalidTemplate(f"{template!r}: unknown placeholder {names} (allowed: {allowed})")
    missing = sorted(set(required) - set(found))
    if missing:
        names = ", ".join("{" + name + "}" for name in missing)
        raise InvalidTemplate(f"{template!r}: must contain {names}")
    # A sample rendering catches shapes no value could fix, e.g. "{appid}..svc".
    sample = render_template(template, {name: "x" for name in fields})
    try:
        validate_dns_name(sample)
    except InvalidDnsName as exc:
        raise InvalidTemplate(f"{template!r} does not form a DNS name: {exc}") from None


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders of ``template`` from ``values`` (every one must be given)."""
    missing = sorted(set(template_fields(template)) - set(values))
    if missing:
        raise InvalidTemplate(f"{template!r}: no value for {', '.join(missing)}")
    return template.format_map(values)


def app_name(
    template: str, appid: str, namespace: str, extra: Mapping[str, str] | None = None
) -> str:
    """The DNS name of an app from a template; the app ID and namespace must each be one label."""
    validate_label(appid, what="app ID")
    validate_label(namespace, what="namespace")
    name = render_template(template, {**(extra or {}), "appid": appid, "namespace": namespace})
    return validate_dns_name(name)


def kubernetes_name(
    appid: str, namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> str:
    """Dapr's kubernetes resolver name: ``<appid>-dapr.<namespace>.svc.<clusterDomain>``."""
    validate_dns_name(cluster_domain)
    return app_name(KUBERNETES_TEMPLATE, appid, namespace, {"clusterDomain": cluster_domain})


def srv_name(name: str) -> str:
    """Where the SRV records of an app's internal gRPC port live: ``_dapr-internal._tcp.<name>``."""
    return validate_dns_name(f"{INTERNAL_SRV_PREFIX}.{name}")


def validate_label(label: str, *, what: str = "label") -> str:
    if not label:
        raise InvalidDnsName(f"the {what} is empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidDnsName(f"the {what} {label!r} is longer than {MAX_LABEL_LENGTH} characters")
    if not _LABEL.fullmatch(label):
        raise InvalidDnsName(f"the {what} {label!r} may hold only letters, digits, '-' and '_'")
    return label


def validate_dns_name(name: str) -> str:
    """Return ``name`` if it is a DNS name (an absolute name's trailing dot is allowed)."""
    body = name[:-1] if name.endswith(".") else name
    if not body:
        raise InvalidDnsName("the DNS name is empty")
    if len(body) > MAX_NAME_LENGTH:
        raise InvalidDnsName(f"{name!r} is longer than {MAX_NAME_LENGTH} characters")
    for label in body.split("."):
        if not label:
            raise InvalidDnsName(f"{name!r} has an empty label")
        validate_label(label, what=f"label in {name!r}")
    return name
