"""The callee's rules for a gRPC app (``--app-protocol grpc``/``grpcs``), as daprd's
gRPC channel applies them (``pkg/channel/grpc/grpc_channel.go``,
``pkg/messaging/v1/util.go``): the invocation metadata as OnInvoke's gRPC metadata,
and the app's answer as ``InternalInvokeResponse``. Pure: plain values in and out."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping

from google.protobuf.message import DecodeError

from proxy.app.grpc_channel import GrpcAppAnswer
from proxy.core.grpc_status import GRPC_CODE_NAMES
from proxy.hop.header_rules import API_TOKEN, CALLER_APP_ID, CALLER_NAMESPACE, CallerIdentity
from proxy.observability.trace_context import (
    TraceContext,
    format_grpc_trace_bin,
    format_traceparent,
    parse_traceparent,
)
from proxy.protos import internals_pb2

GrpcMetadata = tuple[tuple[bytes, bytes], ...]

# isPermanentHTTPHeader: HTTP headers that reach a gRPC app as "dapr-<name>".
PERMANENT_HTTP_HEADERS = frozenset(
    (
        "accept",
        "accept-charset",
        "accept-language",
        "accept-ranges",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "cache-control",
        "content-type",
        "content-length",
        "cookie",
        "date",
        "expect",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-schedule-tag-match",
        "if-unmodified-since",
        "max-forwards",
        "origin",
        "pragma",
        "referer",
        "via",
        "warning",
    )
)
# What grpc-go never sends as a call's metadata (isReservedHeader): the call's own.
_RESERVED = frozenset(
    (
        "content-type",
        "user-agent",
        "te",
        "grpc-message-type",
        "grpc-encoding",
        "grpc-message",
        "grpc-status",
        "grpc-timeout",
        "grpc-status-details-bin",
    )
)
# Set by the callee itself, never copied from the caller's metadata.
_TRACE_KEYS = frozenset(("traceparent", "tracestate", "grpc-trace-bin"))
_CALLEE_SETS = _TRACE_KEYS | {"destination-app-id", API_TOKEN.decode()}
# Response metadata that is the app connection's, not the app's answer (grpc-go keeps
# all but the reserved ones; grpc-accept-encoding is left out too: it describes the
# sidecar's connection to the app, and the gRPC API's own server sends its own).
NOT_ANSWER_METADATA = _RESERVED | {"grpc-accept-encoding"}
_KEY = re.compile(r"[0-9a-z_.-]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def app_metadata(
    metadata: Mapping[str, Iterable[str]],
    *,
    verified_caller: CallerIdentity | None,
    app_api_token: str | None,
    trace: TraceContext | None,
) -> GrpcMetadata:
    """OnInvoke's metadata: keys lower-cased, permanent HTTP headers as ``dapr-<name>``,
    ``-bin`` values base64-decoded (sent as gRPC binary metadata), what gRPC cannot
    carry left out; the trace context (ours, else the caller's) as ``traceparent``,
    ``tracestate`` and ``grpc-trace-bin``; ``dapr-api-token`` = APP_API_TOKEN. With
    mTLS the caller's identity comes from its certificate (as towards HTTP apps)."""
    out: list[tuple[bytes, bytes]] = []
    traceparent = tracestate = ""
    for key, values in metadata.items():
        lower = key.lower()
        if lower == "traceparent":
            traceparent = next(iter(values), "")
        elif lower == "tracestate":
            tracestate = next(iter(values), "")
        if lower in _CALLEE_SETS:
            continue
        if verified_caller is not None and lower in (CALLER_APP_ID, CALLER_NAMESPACE):
            continue
        name = "dapr-" + lower if lower in PERMANENT_HTTP_HEADERS else lower
        if name in _RESERVED or not _KEY.fullmatch(name):
            continue
        encoded = name.encode("ascii")
        for value in values:
            data = _wire_value(name, value)
            if data is not None:
                out.append((encoded, data))
    if verified_caller is not None:
        out.append((CALLER_APP_ID.encode(), verified_caller.app_id.encode()))
        out.append((CALLER_NAMESPACE.encode(), verified_caller.namespace.encode()))
    if trace is None and traceparent:
        trace = parse_traceparent(traceparent, tracestate)
    if trace is not None:
        out.append((b"traceparent", format_traceparent(trace).encode("ascii")))
        if trace.tracestate:
            out.append((b"tracestate", trace.tracestate.encode("latin-1")))
        out.append((b"grpc-trace-bin", _b64(format_grpc_trace_bin(trace))))
    if app_api_token:
        out.append((API_TOKEN, app_api_token.encode("latin-1")))
    return tuple(out)


def _wire_value(name: str, value: str) -> bytes | None:
    """A metadata value as the HTTP/2 header carries it; None when it cannot be sent."""
    if name.endswith("-bin"):
        # Carried base64-encoded in Dapr's metadata (one more encoding on the wire);
        # daprd drops a value that does not decode.
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return _b64(raw)
    if not _PRINTABLE.fullmatch(value):
        return None  # grpc-go refuses non-printable values in text metadata
    return value.encode("ascii")


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")


def answer_metadata(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """The app's header or trailer metadata as Dapr's response carries it (grpc-go's
    metadata.MD through MetadataToInternalMetadata): pseudo-headers and gRPC's own
    left out, keys lower-case, ``-bin`` values standard base64."""
    carried: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key[:1] == ":" or key in NOT_ANSWER_METADATA:
            continue
        if key.endswith("-bin"):
            raw = _b64decode_lenient(value)
            if raw is None:
                continue
            text = base64.b64encode(raw).decode("ascii")
        else:
            text = value.decode("latin-1")
        carried.setdefault(key, []).append(text)
    return carried


def _b64decode_lenient(value: bytes) -> bytes | None:
    """gRPC binary metadata: base64, padded or not."""
    try:
        return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def status_details(trailers: Iterable[tuple[bytes, bytes]]) -> internals_pb2.Status | None:
    """The ``google.rpc.Status`` an app put in ``grpc-status-details-bin`` (its wire is
    that of Dapr's internals ``Status``); None without a readable one."""
    for name, value in trailers:
        if name == b"grpc-status-details-bin":
            raw = _b64decode_lenient(value)
            if raw is None:
                return None
            try:
                return internals_pb2.Status.FromString(raw)
            except DecodeError:
                return None
    return None


def fill_grpc_head(head: internals_pb2.InternalInvokeResponse, answer: GrpcAppAnswer) -> None:
    """daprd's InternalInvokeResponse for a gRPC app (body not included): status = the
    app's gRPC status with its details, headers and trailers from its metadata, and
    the InvokeResponse (content type and data type URL) when it answered OK."""
    status = head.status
    status.code = GRPC_CODE_NAMES.index(answer.code) if answer.code in GRPC_CODE_NAMES else 2
    status.message = answer.message
    details = status_details(answer.trailers)
    if details is not None:
        status.details.extend(details.details)
    for target, source in ((head.headers, answer.headers), (head.trailers, answer.trailers)):
        for key, values in answer_metadata(source).items():
            target[key].values.extend(values)
    response = answer.response
    if response is not None:
        message = head.message
        message.content_type = response.content_type
        if response.data.type_url:
            message.data.type_url = response.data.type_url
