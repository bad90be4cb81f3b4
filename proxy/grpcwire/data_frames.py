"""DATA frames on open streams without h2's frame objects.

A busy tether connection carries little but DATA frames, and h2 spends about 35 µs
of CPU to send, receive and acknowledge one between two connections (frame objects,
state machines, a repr for a log it never writes); this path, about 7 µs. Here a DATA
frame on an open stream is written and read directly, with the checks h2 makes and on
h2's own state (its outbound buffer, windows and frame sizes), so h2 stays right about
everything. Every other frame, and a DATA frame with anything unusual about it
(padding, END_STREAM, a stream not open, a window or size exceeded, a header block in
progress), goes through h2 as before, and h2 answers it as before.

This leans on h2 4's internals (``_data_to_send``, the window managers, the frame
buffer's state); pyproject pins h2 below 5, and the tests drive both paths.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from h2.connection import ConnectionState, H2Connection
from h2.stream import StreamState

from proxy.grpcwire import frame_repr

# The frames h2 still reads, it formats for a trace log: cheaply, from here on. Every
# lean connection (client and server) imports this module.
frame_repr.install()

_OPEN = (ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN)
_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
# length (24 bits, as 16 + 8), type, flags, stream id (with its reserved bit).
_HEAD = struct.Struct(">HBBBL")
_HEAD_SIZE = 9
_DATA = 0
_STREAM_ID = 0x7FFFFFFF


def send_data(h2conn: H2Connection, stream_id: int, data: bytes) -> None:
    """``h2conn.send_data(stream_id, data)``: one DATA frame, no END_STREAM, no padding."""
    size = len(data)
    stream = h2conn.streams.get(stream_id)
    if (
        stream is None
        or not 0 < size <= h2conn.max_outbound_frame_size
        or size > h2conn.outbound_flow_control_window
        or size > stream.outbound_flow_control_window
        or stream.state_machine.state not in _SENDING
        or h2conn.state_machine.state not in _OPEN
    ):
        h2conn.send_data(stream_id, data)  # h2 sends it, or raises what it raises
        return
    h2conn._data_to_send += _HEAD.pack(size >> 8, size & 0xFF, _DATA, 0, stream_id)
    h2conn._data_to_send += data
    stream.outbound_flow_control_window -= size
    h2conn.outbound_flow_control_window -= size


class InboundFrames:
    """Cuts what a connection receives at frame boundaries. ``feed`` returns, in
    order, ``(0, bytes)`` for h2 to receive and ``(stream_id, frame)`` for each
    DATA frame without flags, which ``take`` reads (or, if h2 must, leaves for
    h2): handle each piece before the next, as h2's state decides."""

    __slots__ = ("_cutting", "_h2", "_rest")

    def __init__(self, h2conn: H2Connection) -> None:
        self._h2 = h2conn
        self._rest = b""  # the start of a frame, until the rest of it arrives
        # Only once h2 holds no partial input (a server's preface comes first).
        self._cutting = False

    def for_h2(self, data: bytes, on_data: Callable[[int, bytes, int], None]) -> Iterator[bytes]:
        """What a connection reads: the DATA frames taken here go to ``on_data(stream_id,
        payload, size)``, the rest is yielded for h2 to receive, all in order. Receive
        each yield before the next: whether a frame is taken depends on h2's state."""
        for stream_id, chunk in self.feed(data):
            if stream_id:
                payload = self.take(stream_id, chunk)
                if payload is not None:
                    on_data(stream_id, payload, len(payload))
                    continue
            yield chunk

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if not self._cutting:
            frames = self._h2.incoming_buffer
            if frames._preamble_len or frames._data:
                return [(0, data)]  # h2 holds the start of something: all of it is h2's
            self._cutting = True  # from here on h2 is only ever given whole frames
        if self._rest:
            data = self._rest + data
            self._rest = b""
        pieces: list[tuple[int, bytes]] = []
        end = len(data)
        limit = self._h2.max_inbound_frame_size
        start = position = 0  # start: the first byte not yet handed out
        unpack = _HEAD.unpack_from
        while end - position >= _HEAD_SIZE:
            high, low, kind, flags, stream_id = unpack(data, position)
            size = (high << 8) | low
            if size > limit:
                # Not buffered here: h2 takes the rest and refuses the frame once whole.
                pieces.append((0, data[start:]))
                self._cutting = False
                return pieces
            following = position + _HEAD_SIZE + size
            if following > end:
                break
            if kind == _DATA and flags == 0:
                if start < position:
                    pieces.append((0, data[start:position]))
                pieces.append((stream_id & _STREAM_ID, data[position:following]))
                start = following
            position = following
        if start < position:
            pieces.append((0, data[start:position]))
        if position < end:
            self._rest = data[position:]
        return pieces

    def take(self, stream_id: int, frame: bytes) -> bytes | None:
        """The payload of a DATA frame, its bytes counted against h2's receive
        windows; None when h2 should receive the frame itself."""
        h2conn = self._h2
        size = len(frame) - _HEAD_SIZE
        stream = h2conn.streams.get(stream_id)
        if (
            stream is None
            or size == 0
            or stream.state_machine.state not in _RECEIVING
            or h2conn.state_machine.state not in _OPEN
            or stream._expected_content_length is not None
            or h2conn.incoming_buffer._headers_buffer
        ):
            return None
        connection_window = h2conn._inbound_flow_control_window_manager
        stream_window = stream._inbound_window_manager
        if size > connection_window.current_window_size or size > stream_window.current_window_size:
            return None  # h2 treats the overrun
        connection_window.current_window_size -= size
        stream_window.current_window_size -= size
        return frame[_HEAD_SIZE:]
