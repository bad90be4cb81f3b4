"""W3C trace context and gRPC's binary trace header, as plain values.

Pure on purpose: the request path reads and writes these headers even when
tracing is off, so nothing here imports OpenTelemetry.

- ``traceparent`` follows W3C Trace Context: version 00 is parsed strictly;
  a later version (but not ``ff``) is parsed leniently, reading the four
  version-00 fields and ignoring what follows a ``-``, as the spec asks.
- ``grpc-trace-bin`` is OpenCensus's binary format, which Dapr sends between
  sidecars: version 0, then field 0 (trace id, 16 bytes), field 1 (span id,
  8 bytes), field 2 (trace options, 1 byte) — 29 bytes in all.
- ``tracestate`` is carried verbatim; a value longer than 512 characters is
  dropped whole, as the spec allows, rather than cut at an arbitrary byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRACESTATE_MAX_CHARS = 512
SAMPLED_FLAG = 0x01

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACEPARENT_V00_LENGTH = 55
_OWS = " \t"

_BIN_VERSION = 0
_BIN_TRACE_ID_FIELD = 0
_BIN_SPAN_ID_FIELD = 1
_BIN_OPTIONS_FIELD = 2
GRPC_TRACE_BIN_LENGTH = 29


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One span's identity as it travels between processes."""

    trace_id: bytes  # 16 bytes, not all zero
    span_id: bytes  # 8 bytes, not all zero
    flags: int  # the trace-flags byte; bit 0 is "sampled"
    tracestate: str = ""  # the W3C tracestate header, verbatim

    def __post_init__(self) -> None:
        if len(self.trace_id) != 16 or self.trace_id == _ZERO_TRACE_ID:
            raise ValueError("trace_id must be 16 bytes, not all zero")
        if len(self.span_id) != 8 or self.span_id == _ZERO_SPAN_ID:
            raise ValueError("span_id must be 8 bytes, not all zero")
        if not 0 <= self.flags <= 0xFF:
            raise ValueError("flags must fit in one byte")

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED_FLAG)


def keep_tracestate(value: str) -> str:
    """The tracestate to carry on: ``value`` trimmed, or "" if it is too long."""
    stripped = value.strip(_OWS)
    return stripped if len(stripped) <= TRACESTATE_MAX_CHARS else ""


def parse_traceparent(value: str, tracestate: str = "") -> TraceContext | None:
    """The context in a ``traceparent`` header, or None if the header is invalid.

    ``tracestate`` is the request's ``tracestate`` header (several headers
    joined with ","), attached to the result only when the traceparent is valid.
    """
    text = value.strip(_OWS)
    match = _TRACEPARENT.match(text)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex = match.groups()
    if version == "ff":
        return None
    if len(text) != _TRACEPARENT_V00_LENGTH and (version == "00" or text[55] != "-"):
        return None
    trace_id = bytes.fromhex(trace_hex)
    span_id = bytes.fromhex(span_hex)
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return TraceContext(trace_id, span_id, int(flags_hex, 16), keep_tracestate(tracestate))


def format_traceparent(ctx: TraceContext) -> str:
    """The version-00 ``traceparent`` header for ``ctx``."""
    return f"00-{ctx.trace_id.hex()}-{ctx.span_id.hex()}-{ctx.flags:02x}"


def parse_grpc_trace_bin(data: bytes, tracestate: str = "") -> TraceContext | None:
    """The context in a ``grpc-trace-bin`` value, or None if it is invalid.

    As OpenCensus does, the options field may be missing (not sampled) and bytes
    after the known fields are ignored, so a longer future encoding still parses.
    A trace id and a non-zero span id are required: without them there is no
    parent to continue.
    """
    if len(data) < 1 + 17 + 9 or data[0] != _BIN_VERSION:
        return None
    if data[1] != _BIN_TRACE_ID_FIELD or data[18] != _BIN_SPAN_ID_FIELD:
        return None
    trace_id = bytes(data[2:18])
    span_id = bytes(data[19:27])
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    flags = 0
    if len(data) >= GRPC_TRACE_BIN_LENGTH and data[27] == _BIN_OPTIONS_FIELD:
        flags = data[28]
    return TraceContext(trace_id, span_id, flags, keep_tracestate(tracestate))


def format_grpc_trace_bin(ctx: TraceContext) -> bytes:
    """The 29-byte ``grpc-trace-bin`` value for ``ctx`` (tracestate travels separately)."""
    return b"".join(
        (
            bytes((_BIN_VERSION, _BIN_TRACE_ID_FIELD)),
            ctx.trace_id,
            bytes((_BIN_SPAN_ID_FIELD,)),
            ctx.span_id,
            bytes((_BIN_OPTIONS_FIELD, ctx.flags)),
        )
    )
