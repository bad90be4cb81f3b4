"""Metadata rules of gRPC proxying, at both sidecars: pure functions over header
lists as they travel on HTTP/2 (lower-case ``bytes`` names, ``-bin`` values still
base64, so binary metadata passes untouched).

Each hop drops what belongs to the hop (pseudo-headers, what the gRPC wire sets
itself, connection-specific headers) and what only a sidecar may say; the sidecar
then adds its own names last, so a caller can neither forge nor delete them."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy.core.grpc_status import GRPC_CODE_NAMES
from proxy.grpcwire.messages import encode_status_message
from proxy.hop.header_rules import HOP_BY_HOP

Headers = list[tuple[bytes, bytes]]

APP_ID = b"dapr-app-id"
CALLER_APP_ID = b"dapr-caller-app-id"
CALLER_NAMESPACE = b"dapr-caller-namespace"
CALLEE_APP_ID = b"dapr-callee-app-id"
API_TOKEN = b"dapr-api-token"
STREAM = b"dapr-stream"
TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"

# What the gRPC wire itself says on each hop: each side's lean client or server writes
# its own (grpc-timeout: the remaining time, set from the deadline, never copied).
_WIRE = frozenset(
    {
        b"content-type",
        b"te",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"user-agent",
    }
)
# Connection-specific (HTTP/2 forbids them) or meant for one hop only.
_HOP_BY_HOP = HOP_BY_HOP | {b"host"}
# Only a sidecar sets these; a caller's copies are dropped.
_SIDECAR_SETS = frozenset({CALLER_APP_ID, CALLER_NAMESPACE, CALLEE_APP_ID})
# A status belongs in trailers; in a request it is nonsense to pass on.
_STATUS_NAMES = frozenset({b"grpc-status", b"grpc-message"})
_DROPPED = _WIRE | _HOP_BY_HOP | _STATUS_NAMES
# gRPC's metadata key grammar (lower case; a relay must not send what h2 refuses).
_KEY = re.compile(rb"[0-9a-z_.\-]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


def _kept(name: bytes, value: bytes) -> bool:
    return (
        name[:1] != b":"
        and name not in _DROPPED
        and _KEY.fullmatch(name) is not None
        and _BAD_VALUE.search(value) is None
    )


def first(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def target_app_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The app a call on the API port is for (``dapr-app-id``); None: not proxied."""
    value = first(headers, APP_ID)
    if value is None or not value.strip():
        return None
    return value.strip().decode("utf-8", "replace")


def callee_app_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The app a proxied call reaching the internal port is for: ``dapr-callee-app-id``
    as the caller's sidecar set it, else ``dapr-app-id`` (daprd's fallback)."""
    value = first(headers, CALLEE_APP_ID) or first(headers, APP_ID)
    if value is None or not value.strip():
        return None
    return value.strip().decode("utf-8", "replace")


def is_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """``dapr-stream: true``: resiliency covers the stream's set-up only."""
    value = first(headers, STREAM)
    return value is not None and value.strip().lower() == b"true"


def token_problem(headers: Iterable[tuple[bytes, bytes]], expected: bytes | None) -> str | None:
    """daprd's API token check on the API port; None when the call may pass."""
    if expected is None:
        return None
    token = first(headers, API_TOKEN)
    if token is None:
        return "authentication error: missing api token in request"
    if not hmac.compare_digest(token, expected):
        return "authentication error: api token mismatch"
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """The calling app as its sidecar names it to the next hop."""

    app_id: str
    namespace: str


def to_peer(headers: Sequence[tuple[bytes, bytes]], caller: Identity, callee: str) -> Headers:
    """The caller's metadata for the target's sidecar: everything the app sent but the
    hop's own headers, the API token and forged sidecar names; then the caller and
    callee as this sidecar knows them. ``dapr-app-id`` stays (daprd keeps it too)."""
    out = [
        (name, value)
        for name, value in headers
        if _kept(name, value) and name not in _SIDECAR_SETS and name != API_TOKEN
    ]
    out.append((CALLER_APP_ID, caller.app_id.encode()))
    out.append((CALLER_NAMESPACE, caller.namespace.encode()))
    out.append((CALLEE_APP_ID, callee.encode()))
    return out


def to_app(
    headers: Sequence[tuple[bytes, bytes]],
    verified: Identity | None,
    app_token: str | None,
) -> Headers:
    """The metadata the target app sees. With a verified caller (mTLS) the caller names
    come from its certificate, replacing what its sidecar said; without one they stay
    as the caller's sidecar set them. The app token replaces any ``dapr-api-token``."""
    out: Headers = []
    for name, value in headers:
        if not _kept(name, value) or name == API_TOKEN:
            continue
        if verified is not None and name in (CALLER_APP_ID, CALLER_NAMESPACE):
            continue
        out.append((name, value))
    if verified is not None:
        out.append((CALLER_APP_ID, verified.app_id.encode()))
        out.append((CALLER_NAMESPACE, verified.namespace.encode()))
    if app_token:
        out.append((API_TOKEN, app_token.encode()))
    return out


def with_trace(headers: Headers, traceparent: str | None, tracestate: str = "") -> Headers:
    """``headers`` with the trace context replaced by ours (None: left as the app sent it)."""
    if traceparent is None:
        return headers
    out = [(n, v) for n, v in headers if n not in (TRACEPARENT, TRACESTATE)]
    out.append((TRACEPARENT, traceparent.encode()))
    if tracestate:
        out.append((TRACESTATE, tracestate.encode()))
    return out


def response_headers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """The app's initial metadata, relayed (the wire's own response headers dropped)."""
    return [(name, value) for name, value in headers if _kept(name, value)]


def trailers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """The app's trailers, relayed: ``grpc-status`` and ``grpc-message`` as they came
    (any code; the message still percent-encoded), with every trailing metadata entry
    (``grpc-status-details-bin`` untouched)."""
    return [(name, value) for name, value in headers if name in _STATUS_NAMES or _kept(name, value)]


def status_trailers(code: str, message: str) -> Headers:
    """Trailers for a status this sidecar decides (the call failed before an answer)."""
    number = GRPC_CODE_NAMES.index(code) if code in GRPC_CODE_NAMES else 2
    out = [(b"grpc-status", str(number).encode())]
    if message:
        out.append((b"grpc-message", encode_status_message(message).encode("ascii")))
    return out


def status_code(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The number in ``grpc-status``; None without a valid one."""
    value = first(headers, b"grpc-status")
    if value is None or not value.isdigit():
        return None
    return int(value)
