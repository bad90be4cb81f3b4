"""Where the trace context travels: W3C ``traceparent``/``tracestate`` headers
from the calling app, the same two keys in the invocation's metadata across the
sidecar hop (plus ``grpc-trace-bin`` in gRPC metadata, which daprd reads), and
``traceparent`` again towards the target app."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from proxy.observability.trace_context import (
    TraceContext,
    format_grpc_trace_bin,
    format_traceparent,
    parse_grpc_trace_bin,
    parse_traceparent,
)
from proxy.protos import internals_pb2

# Keys as Go canonicalises them, which is how Dapr's metadata carries them.
_TRACEPARENT = "Traceparent"
_TRACESTATE = "Tracestate"


def incoming_trace(headers: Iterable[tuple[bytes, bytes]]) -> TraceContext | None:
    """The calling app's W3C context, if it sent a valid one."""
    traceparent = tracestate = ""
    for name, value in headers:
        if name == b"traceparent":
            traceparent = value.decode("latin-1")
        elif name == b"tracestate":
            tracestate = value.decode("latin-1")
    return parse_traceparent(traceparent, tracestate) if traceparent else None


def propagate(message: internals_pb2.InternalInvokeRequest, context: TraceContext | None) -> None:
    """Replace whatever trace context the app sent with ours, in the hop's metadata."""
    metadata = message.metadata
    for key in [k for k in metadata if k.lower() in ("traceparent", "tracestate")]:
        del metadata[key]
    if context is None:
        return
    metadata[_TRACEPARENT].values.append(format_traceparent(context))
    if context.tracestate:
        metadata[_TRACESTATE].values.append(context.tracestate)


def metadata_trace(message: internals_pb2.InternalInvokeRequest) -> TraceContext | None:
    """The caller sidecar's context from the invocation metadata."""
    traceparent = tracestate = ""
    for key, value in message.metadata.items():
        lower = key.lower()
        if lower == "traceparent" and value.values:
            traceparent = value.values[0]
        elif lower == "tracestate" and value.values:
            tracestate = value.values[0]
    return parse_traceparent(traceparent, tracestate) if traceparent else None


def grpc_trace_metadata(context: TraceContext | None) -> tuple[tuple[str, str | bytes], ...]:
    """gRPC call metadata for the Dapr RPCs (daprd prefers grpc-trace-bin)."""
    if context is None:
        return ()
    return (
        ("grpc-trace-bin", format_grpc_trace_bin(context)),
        ("traceparent", format_traceparent(context)),
    )


def grpc_metadata_trace(metadata: Sequence[tuple[str, str | bytes]] | None) -> TraceContext | None:
    """A context from gRPC call metadata: grpc-trace-bin first, as daprd does."""
    found: Mapping[str, str | bytes] = dict(metadata or ())
    binary = found.get("grpc-trace-bin")
    if isinstance(binary, bytes):
        parsed = parse_grpc_trace_bin(binary)
        if parsed is not None:
            return parsed
    text = found.get("traceparent")
    return parse_traceparent(text) if isinstance(text, str) else None


def app_headers_with_trace(
    headers: list[tuple[bytes, bytes]], context: TraceContext | None
) -> list[tuple[bytes, bytes]]:
    """Headers for the app with our server span's context in place of the caller's."""
    if context is None:
        return headers
    kept = [(n, v) for n, v in headers if n not in (b"traceparent", b"tracestate")]
    kept.append((b"traceparent", format_traceparent(context).encode()))
    if context.tracestate:
        kept.append((b"tracestate", context.tracestate.encode("latin-1")))
    return kept
