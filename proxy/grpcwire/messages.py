"""gRPC's framing over HTTP/2, as pure functions: length-prefixed messages,
``grpc-timeout`` and ``grpc-message`` (PROTOCOL-HTTP2.md in grpc/grpc).

Shared by tether's lean gRPC client and server (on the ``h2`` library), which
speak the same wire as grpcio so either side can be either implementation."""

from __future__ import annotations

import math
from urllib.parse import quote, unquote

# 1 byte compressed-flag, 4 bytes big-endian length.
PREFIX_SIZE = 5

# Units of grpc-timeout, in seconds each.
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_MAX_TIMEOUT_DIGITS = 8

# grpc-message: printable ASCII except '%' goes as it is, everything else percent-encoded.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)


class MessageError(Exception):
    """The peer broke gRPC's framing; ``code`` is the gRPC status name to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_message(payload: bytes) -> bytes:
    """One uncompressed gRPC message, ready to go in DATA frames."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class MessageReader:
    """Reassembles gRPC messages from DATA frame payloads, however they were split."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Every message completed by ``data``, in order. Raises MessageError."""
        buffer = self._buffer
        if not buffer and len(data) >= PREFIX_SIZE:
            # Fast path: the common frame holding exactly one whole message.
            length = _length(data, self._limit)
            if len(data) == PREFIX_SIZE + length:
                return [data[PREFIX_SIZE:]]
        buffer += data
        messages: list[bytes] = []
        while len(buffer) >= PREFIX_SIZE:
            length = _length(buffer, self._limit)
            end = PREFIX_SIZE + length
            if len(buffer) < end:
                break
            messages.append(bytes(buffer[PREFIX_SIZE:end]))
            del buffer[:end]
        return messages

    @property
    def pending(self) -> bool:
        """True when part of a message is buffered (the stream must not end here)."""
        return bool(self._buffer)


def _length(prefix: bytes | bytearray, limit: int) -> int:
    if prefix[0] != 0:
        # We never advertise grpc-accept-encoding, so a compressed message is a peer defect.
        raise MessageError("INTERNAL", "compressed message without negotiated encoding")
    length = int.from_bytes(prefix[1:PREFIX_SIZE], "big")
    if length > limit:
        raise MessageError(
            "RESOURCE_EXHAUSTED", f"received message larger than max ({length} vs. {limit})"
        )
    return length


def parse_timeout(value: str) -> float | None:
    """Seconds from a ``grpc-timeout`` value; None when it is malformed."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > _MAX_TIMEOUT_DIGITS or unit not in _TIMEOUT_UNITS:
        return None
    return int(digits) * _TIMEOUT_UNITS[unit]


def format_timeout(seconds: float) -> str:
    """The shortest exact-enough ``grpc-timeout`` for ``seconds`` (never below 1 ns)."""
    nanos = max(1, math.ceil(seconds * 1e9))  # up: a deadline must not come early
    for unit, size in (("n", 1), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000)):
        count = -(-nanos // size)  # round up: a deadline must not come early
        if count < 10**_MAX_TIMEOUT_DIGITS:
            return f"{count}{unit}"
    return f"{min(-(-nanos // 3_600_000_000_000), 10**_MAX_TIMEOUT_DIGITS - 1)}H"


def encode_status_message(message: str) -> str:
    return quote(message, safe=_MESSAGE_SAFE)


def decode_status_message(value: str) -> str:
    return unquote(value, errors="replace")
