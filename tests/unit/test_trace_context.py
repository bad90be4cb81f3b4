"""W3C traceparent/tracestate and grpc-trace-bin as plain values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.observability.trace_context import (
    GRPC_TRACE_BIN_LENGTH,
    TraceContext,
    format_grpc_trace_bin,
    format_traceparent,
    keep_tracestate,
    parse_grpc_trace_bin,
    parse_traceparent,
)

TRACE_HEX = "0af7651916cd43dd8448eb211c80319c"
SPAN_HEX = "b7ad6b7169203331"
VALID = f"00-{TRACE_HEX}-{SPAN_HEX}-01"


def test_parse_valid_traceparent() -> None:
    ctx = parse_traceparent(VALID)
    assert ctx == TraceContext(bytes.fromhex(TRACE_HEX), bytes.fromhex(SPAN_HEX), 1)
    assert ctx.sampled
    assert ctx.tracestate == ""


@pytest.mark.parametrize("flags", ["00", "01", "02", "03", "ff"])
def test_traceparent_round_trip(flags: str) -> None:
    text = f"00-{TRACE_HEX}-{SPAN_HEX}-{flags}"
    ctx = parse_traceparent(text)
    assert ctx is not None
    assert ctx.flags == int(flags, 16)
    assert ctx.sampled == bool(int(flags, 16) & 1)
    assert format_traceparent(ctx) == text


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_traceparent(f" \t{VALID} ") == parse_traceparent(VALID)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00",
        VALID.upper(),
        f"00-{TRACE_HEX.upper()}-{SPAN_HEX}-01",
        f"00-{TRACE_HEX}-{SPAN_HEX.upper()}-01",
        f"00-{TRACE_HEX}-{SPAN_HEX}-0A",
        f"0A-{TRACE_HEX}-{SPAN_HEX}-01",
        f"00-{TRACE_HEX[:-1]}-{SPAN_HEX}-01",  # trace id too short
        f"00-{TRACE_HEX}0-{SPAN_HEX}-01",  # trace id too long
        f"00-{TRACE_HEX}-{SPAN_HEX[:-1]}-01",  # span id too short
        f"00-{TRACE_HEX}-{SPAN_HEX}0-01",  # span id too long
        f"00-{TRACE_HEX}-{SPAN_HEX}-1",  # flags too short
        f"00-{TRACE_HEX}-{SPAN_HEX}-011",  # flags too long
        f"0-{TRACE_HEX}-{SPAN_HEX}-01",  # version too short
        f"000-{TRACE_HEX}-{SPAN_HEX}-01",
        f"00-{'0' * 32}-{SPAN_HEX}-01",  # all-zero trace id
        f"00-{TRACE_HEX}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_HEX}-{SPAN_HEX}-01",  # version ff is forbidden
        f"ff-{TRACE_HEX}-{SPAN_HEX}-01-extra",
        f"00-{TRACE_HEX}-{SPAN_HEX}-01-extra",  # version 00 has exactly four fields
        f"00_{TRACE_HEX}_{SPAN_HEX}_01",
        f"00-{TRACE_HEX[:-1]}g-{SPAN_HEX}-01",
        f"00-{TRACE_HEX}-{SPAN_HEX}-01\x00",
    ],
)
def test_invalid_traceparent(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize("suffix", ["", "-", "-what-ever", "-0123"])
def test_future_version_is_parsed_leniently(suffix: str) -> None:
    ctx = parse_traceparent(f"cc-{TRACE_HEX}-{SPAN_HEX}-01{suffix}")
    assert ctx == TraceContext(bytes.fromhex(TRACE_HEX), bytes.fromhex(SPAN_HEX), 1)
    assert ctx is not None
    # Re-emitted as the version this implementation speaks.
    assert format_traceparent(ctx) == VALID


@pytest.mark.parametrize("suffix", ["x", "0", "extra"])
def test_future_version_needs_a_dash_after_the_flags(suffix: str) -> None:
    assert parse_traceparent(f"cc-{TRACE_HEX}-{SPAN_HEX}-01{suffix}") is None


def test_tracestate_is_kept_verbatim_up_to_512_chars() -> None:
    state = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
    ctx = parse_traceparent(VALID, state)
    assert ctx is not None
    assert ctx.tracestate == state
    exactly = "a=" + "b" * 510
    assert parse_traceparent(VALID, exactly) == TraceContext(
        bytes.fromhex(TRACE_HEX), bytes.fromhex(SPAN_HEX), 1, exactly
    )


def test_tracestate_over_512_chars_is_dropped() -> None:
    ctx = parse_traceparent(VALID, "a=" + "b" * 511)
    assert ctx is not None
    assert ctx.tracestate == ""
    assert keep_tracestate(" x=1 ") == "x=1"


def test_tracestate_without_valid_traceparent_is_ignored() -> None:
    assert parse_traceparent("garbage", "x=1") is None


def _ctx(flags: int = 1, tracestate: str = "") -> TraceContext:
    return TraceContext(bytes(range(1, 17)), bytes(range(0xA1, 0xA9)), flags, tracestate)


def test_grpc_trace_bin_exact_layout() -> None:
    data = format_grpc_trace_bin(_ctx(flags=1))
    assert len(data) == GRPC_TRACE_BIN_LENGTH == 29
    assert data == (
        b"\x00"  # version
        + b"\x00"  # field 0: trace id
        + bytes(range(1, 17))
        + b"\x01"  # field 1: span id
        + bytes(range(0xA1, 0xA9))
        + b"\x02"  # field 2: trace options
        + b"\x01"
    )


@pytest.mark.parametrize("flags", [0, 1, 3])
def test_grpc_trace_bin_round_trip(flags: int) -> None:
    ctx = _ctx(flags)
    assert parse_grpc_trace_bin(format_grpc_trace_bin(ctx)) == ctx


def test_grpc_trace_bin_carries_tracestate_alongside() -> None:
    parsed = parse_grpc_trace_bin(format_grpc_trace_bin(_ctx()), "k=v")
    assert parsed == _ctx(tracestate="k=v")


def test_grpc_trace_bin_and_traceparent_agree() -> None:
    ctx = parse_traceparent(VALID)
    assert ctx is not None
    again = parse_grpc_trace_bin(format_grpc_trace_bin(ctx))
    assert again is not None
    assert format_traceparent(again) == VALID


def test_grpc_trace_bin_without_options_is_unsampled() -> None:
    data = format_grpc_trace_bin(_ctx(flags=1))[:27]
    assert parse_grpc_trace_bin(data) == _ctx(flags=0)


def test_grpc_trace_bin_ignores_trailing_fields() -> None:
    data = format_grpc_trace_bin(_ctx(flags=1)) + b"\x03\x09"
    assert parse_grpc_trace_bin(data) == _ctx(flags=1)


def _replace(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes((value,)) + data[index + 1 :]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: b"",
        lambda d: d[:26],  # span id cut short
        lambda d: d[:10],
        lambda d: _replace(d, 0, 1),  # unknown version
        lambda d: _replace(d, 1, 1),  # trace id field id wrong
        lambda d: _replace(d, 18, 2),  # span id field id wrong
        lambda d: d[:2] + bytes(16) + d[18:],  # zero trace id
        lambda d: d[:19] + bytes(8) + d[27:],  # zero span id
    ],
)
def test_invalid_grpc_trace_bin(mutate: Callable[[bytes], bytes]) -> None:
    assert parse_grpc_trace_bin(mutate(format_grpc_trace_bin(_ctx()))) is None


@pytest.mark.parametrize(
    ("trace_id", "span_id", "flags"),
    [
        (bytes(15), bytes(range(1, 9)), 0),
        (bytes(16), bytes(range(1, 9)), 0),
        (bytes(range(1, 17)), bytes(7), 0),
        (bytes(range(1, 17)), bytes(8), 0),
        (bytes(range(1, 17)), bytes(range(1, 9)), 256),
        (bytes(range(1, 17)), bytes(range(1, 9)), -1),
    ],
)
def test_trace_context_rejects_impossible_values(
    trace_id: bytes, span_id: bytes, flags: int
) -> None:
    with pytest.raises(ValueError):
        TraceContext(trace_id, span_id, flags)
