"""Header rules at both ends of the sidecar hop. Pure functions over h11-style
header lists (lower-case ``bytes`` names) and the string multimap carried in
``InternalInvokeRequest.metadata``.

Order matters: hop-by-hop headers (including every name listed in
``Connection``) are stripped first and our own headers are added last, so a
client can neither smuggle a trusted header in nor make us delete one
(``Connection: dapr-caller-app-id``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from proxy.core.errors import CallRejected

Headers = list[tuple[bytes, bytes]]
Metadata = dict[str, list[str]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"te",
        b"trailer",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

CALLER_APP_ID = "dapr-caller-app-id"
CALLER_NAMESPACE = "dapr-caller-namespace"
CALLEE_APP_ID = "dapr-callee-app-id"
API_TOKEN = b"dapr-api-token"

# Headers that only the sidecars may set; inbound copies are spoofing attempts.
_TRUSTED = frozenset(
    {b"dapr-caller-app-id", b"dapr-caller-namespace", b"dapr-callee-app-id", b"destination-app-id"}
)
# Never sent on from the caller's request: routing and auth for this sidecar only,
# and Host (the callee sets the app's own).
_CALLER_ONLY = frozenset({b"dapr-api-token", b"dapr-app-id", b"host"})
# Everything the caller side never forwards, whatever the request's Connection lists.
_NOT_FORWARDED = HOP_BY_HOP | _TRUSTED | _CALLER_ONLY
# gRPC's reserved names, which an HTTP/1 request can not carry: Dapr renames them.
_GRPC_PSEUDO = frozenset({":method", ":scheme", ":path", ":authority"})
# An HTTP field name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Set explicitly by the callee from the request itself, never copied from metadata.
_CALLEE_SETS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "dapr-api-token",
        "dapr-app-id",
        "destination-app-id",
    }
)


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    app_id: str
    namespace: str
    # From the peer's SPIFFE ID; "" when not known (then no access policy matches it).
    trust_domain: str = ""


def _connection_listed(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(token.strip().lower() for token in value.split(b","))
    return frozenset(listed)


def first_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """Drop hop-by-hop headers and every header named in ``Connection``."""
    listed = _connection_listed(headers)
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in listed]


def canonical_name(name: str) -> str:
    """Go's canonical MIME header form (``x-foo-bar`` -> ``X-Foo-Bar``), as Dapr sends it."""
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


# Per-call header work is per name, and a service sees few distinct names: each
# name's translation is computed once (bounded, so odd names cannot grow it).
_NAME_CACHE = 1024


@lru_cache(maxsize=_NAME_CACHE)
def _metadata_key(name: bytes) -> str:
    """A header name as a metadata key (canonical form)."""
    return canonical_name(name.decode("latin-1"))


def outbound_metadata(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    caller: CallerIdentity,
    callee_app_id: str,
    host_ip: str,
    hostname: str,
    drop: bytes = b"",
) -> Metadata:
    """Caller side: the client's request headers -> metadata for the callee sidecar.

    ``drop`` names one more header to remove (the one that carried the target id).
    """
    listed = _connection_listed(headers)
    metadata: Metadata = {}
    for name, value in headers:
        if name in _NOT_FORWARDED or name in listed or name == drop:
            continue
        _add(metadata, _metadata_key(name), value.decode("latin-1"))
    _append_forwarded(metadata, host_ip, hostname)
    metadata[CALLER_APP_ID] = [caller.app_id]
    metadata[CALLER_NAMESPACE] = [caller.namespace]
    metadata[CALLEE_APP_ID] = [callee_app_id]
    return metadata


def _append_forwarded(metadata: Metadata, host_ip: str, hostname: str) -> None:
    # Appending keeps what earlier proxies recorded (Dapr overwrote it: dapr#2846).
    xff = metadata.get("X-Forwarded-For")
    metadata["X-Forwarded-For"] = [f"{xff[-1]}, {host_ip}" if xff else host_ip]
    metadata.setdefault("X-Forwarded-Host", [hostname])
    node = f'"[{host_ip}]"' if ":" in host_ip else host_ip
    element = f"for={node};by={node};host={hostname}"
    fwd = metadata.get("Forwarded")
    metadata["Forwarded"] = [f"{fwd[-1]}, {element}" if fwd else element]


def app_request_headers(
    metadata: Mapping[str, Iterable[str]],
    *,
    verified_caller: CallerIdentity | None,
    app_api_token: str | None,
) -> Headers:
    """Callee side: metadata from the caller sidecar -> headers for the local app.

    Content-Type, Content-Length and Host are added by the caller of this
    function, from the request itself. With mTLS the caller's identity comes
    from its certificate and overrides whatever the metadata claims.
    """
    listed = _listed(metadata)
    out: Headers = []
    for key, values in metadata.items():
        translated = _app_header(key)
        if translated is None:
            continue
        lower, name = translated
        if listed and lower in listed:
            continue
        if verified_caller is not None and lower in (CALLER_APP_ID, CALLER_NAMESPACE):
            continue
        for value in values:
            data = header_value_bytes(value)
            if data is not None:
                out.append((name, data))
    if verified_caller is not None:
        out.append((CALLER_APP_ID.encode(), verified_caller.app_id.encode()))
        out.append((CALLER_NAMESPACE.encode(), verified_caller.namespace.encode()))
    if app_api_token:
        out.append((API_TOKEN, app_api_token.encode("latin-1")))
    return out


def _listed(metadata: Mapping[str, Iterable[str]]) -> set[str]:
    """The lower-case names a ``Connection`` entry lists (hop-by-hop, never passed on)."""
    connection = metadata.get("Connection")
    if not connection:
        return set()
    return {v.strip().lower() for vs in connection for v in vs.split(",")}


@lru_cache(maxsize=_NAME_CACHE)
def _app_header(key: str) -> tuple[str, bytes] | None:
    """A metadata key as the app's header (lower-case text and bytes); None when
    such a key never reaches the app. Raises CallRejected (not cached) for a name
    no HTTP/1 request can carry."""
    if key.lower().endswith("-bin"):
        return None
    lower = app_header_name(key.lower())
    name = lower.encode()
    if lower in _CALLEE_SETS or name in HOP_BY_HOP:
        return None
    return lower, name


def app_header_name(key: str) -> str:
    """A lower-case metadata key as the app's HTTP/1 request may carry it.

    gRPC's pseudo-headers and ``grpc-*`` become ``dapr-*`` (as Dapr renames
    them); any other name that is not an HTTP token is refused with Dapr's
    answer when Go's client meets one: an app channel error.
    """
    if key in _GRPC_PSEUDO:
        return "dapr-" + key[1:]
    if key.startswith("grpc-"):
        return "dapr-" + key
    if not _TOKEN.fullmatch(key):
        raise CallRejected(
            "INTERNAL", f"error invoking app channel: invalid header field name {key!r}"
        )
    return key


def header_value_bytes(value: str) -> bytes | None:
    """A metadata value as header bytes; None when it would split the header.

    Values that came from HTTP are latin-1 text and go back byte for byte; a
    value beyond latin-1 (from a gRPC peer) is sent as UTF-8, as Go sends it.
    """
    if has_forbidden_bytes(value):
        return None
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def _add(metadata: Metadata, key: str, text: str) -> None:
    """Append one value under ``key``, keeping repeated headers as a list."""
    known = metadata.get(key)
    if known is None:
        metadata[key] = [text]
    else:
        known.append(text)


def response_metadata(headers: Sequence[tuple[bytes, bytes]]) -> Metadata:
    """Callee side: the app's response headers -> response metadata (hop-by-hop removed)."""
    metadata: Metadata = {}
    for name, value in strip_hop_by_hop(headers):
        _add(metadata, _metadata_key(name), value.decode("latin-1"))
    return metadata


def client_response_headers(metadata: Mapping[str, Iterable[str]], content_type: str) -> Headers:
    """Caller side: response metadata -> headers for the calling client."""
    listed = _listed(metadata)
    out: Headers = []
    has_type = False
    for key, values in metadata.items():
        lower, name = _client_header(key)
        if not name or (listed and lower in listed):
            continue
        if lower == "content-type":
            has_type = True
        for value in values:
            if not has_forbidden_bytes(value):
                out.append((name, value.encode("latin-1")))
    if content_type and not has_type:
        out.append((b"content-type", content_type.encode("latin-1")))
    return out


@lru_cache(maxsize=_NAME_CACHE)
def _client_header(key: str) -> tuple[str, bytes]:
    """A response metadata key as the client's header (lower-case text and bytes);
    empty bytes when it never reaches the client."""
    lower = key.lower()
    name = lower.encode("latin-1")
    if name in HOP_BY_HOP or lower.endswith("-bin"):
        return lower, b""
    return lower, name


def has_forbidden_bytes(value: str) -> bool:
    """CR, LF or NUL in a value mapped into an HTTP/1 header would split it."""
    return "\r" in value or "\n" in value or "\x00" in value
