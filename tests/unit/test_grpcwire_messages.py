"""gRPC's HTTP/2 framing: messages split or joined in any way, timeouts, status text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.grpcwire.messages import (
    MessageError,
    MessageReader,
    decode_status_message,
    encode_message,
    encode_status_message,
    format_timeout,
    parse_timeout,
)


@given(
    st.lists(st.binary(max_size=300), max_size=6),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
)
def test_messages_survive_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_message(p) for p in payloads)
    reader = MessageReader(limit=1000)
    received: list[bytes] = []
    position, turn = 0, 0
    while position < len(wire):
        step = cuts[turn % len(cuts)]
        received += reader.feed(wire[position : position + step])
        position += step
        turn += 1
    assert received == payloads
    assert not reader.pending


def test_whole_frame_fast_path_and_partial_state() -> None:
    reader = MessageReader(limit=100)
    assert reader.feed(encode_message(b"abc")) == [b"abc"]
    assert reader.feed(encode_message(b"xy")[:3]) == []
    assert reader.pending
    assert reader.feed(encode_message(b"xy")[3:]) == [b"xy"]


def test_oversized_and_compressed_messages_are_refused() -> None:
    with pytest.raises(MessageError) as too_big:
        MessageReader(limit=4).feed(encode_message(b"12345"))
    assert too_big.value.code == "RESOURCE_EXHAUSTED"
    with pytest.raises(MessageError) as compressed:
        MessageReader(limit=100).feed(b"\x01\x00\x00\x00\x01x")
    assert compressed.value.code == "INTERNAL"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1S", 1.0), ("250m", 0.25), ("3M", 180.0), ("2H", 7200.0), ("5u", 5e-6), ("7n", 7e-9)],
)
def test_timeouts_parse(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "1", "1x", "-1S", "123456789S", "1.5S"])
def test_malformed_timeouts_are_none(value: str) -> None:
    assert parse_timeout(value) is None


@given(st.floats(min_value=1e-9, max_value=1e6))
def test_formatted_timeout_round_trips_never_early(seconds: float) -> None:
    text = format_timeout(seconds)
    parsed = parse_timeout(text)
    assert parsed is not None
    assert parsed >= seconds * (1 - 1e-9)
    assert parsed <= seconds * 1.01 + 1e-9


def test_status_message_escapes_what_headers_cannot_hold() -> None:
    text = "bad\r\nvalue 100% ü"
    encoded = encode_status_message(text)
    assert encoded.isascii() and "\r" not in encoded and "\n" not in encoded
    assert decode_status_message(encoded) == text
