"""The sending half of a lean gRPC server connection: response headers, messages
held back by HTTP/2 flow control until the peer's window opens, status trailers,
and one socket write per loop iteration for everything h2 has to send (the messages
a call wrote in that iteration in as few DATA frames as they fit in)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from proxy.core.grpc_status import GRPC_CODE_NAMES
from proxy.grpcwire.data_frames import send_data
from proxy.grpcwire.handlers import RpcMethod
from proxy.grpcwire.messages import encode_message, encode_status_message
from proxy.grpcwire.server_call import AbortError, Metadata, RawHeaders, ServerCall

# (path, request headers as received) -> (code name, message), or a method to run.
UnknownMethod = Callable[[bytes, list[tuple[bytes, bytes]]], "tuple[str, str] | RpcMethod"]

_STATUS = {name: str(number).encode() for number, name in enumerate(GRPC_CODE_NAMES)}
_RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    methods: Mapping[bytes, RpcMethod]
    max_message_size: int
    # The peer's identity from its certificate (getpeercert()), once per connection.
    identify: Callable[[Any], object] | None
    keepalive_time: float
    keepalive_timeout: float
    idle_timeout: float
    # Open connections at most: at the cap an idle one (no calls) is closed for a
    # newcomer, and without one the newcomer is closed.
    max_connections: int = 4096
    # A call to a method not in ``methods``, by its path and request headers (grpc-go's
    # UnknownServiceHandler): a status to answer with, or a method (e.g. a relay) to run;
    # None: UNIMPLEMENTED "Method not found".
    unknown_method: UnknownMethod | None = None


class CallWriter:
    """What a connection sends for its calls; the protocol subclass feeds it events."""

    def __init__(self, settings: ConnectionSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.write_paused = False
        self._settings = settings
        self._h2 = H2Connection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            )
        )
        self._calls: dict[int, ServerCall] = {}
        self._blocked: dict[int, ServerCall] = {}  # calls with DATA waiting for the window
        self._sending: dict[int, ServerCall] = {}  # calls with DATA written since the flush
        self._transport: asyncio.Transport | None = None
        self._flush_pending = False

    def send_headers(self, call: ServerCall, metadata: Metadata = (), raw: RawHeaders = ()) -> None:
        """Response headers: ``metadata`` as a handler gives it, ``raw`` as relayed
        (names lower-case, ``-bin`` values still base64, reserved headers left out)."""
        headers = list(_RESPONSE_HEADERS)
        _add_metadata(headers, metadata)
        headers.extend(raw)
        self._h2.send_headers(call.stream_id, headers)
        call.headers_sent = True
        self._schedule_flush()

    def send_message(self, call: ServerCall, payload: bytes) -> None:
        limit = self._settings.max_message_size
        if len(payload) > limit:
            raise AbortError(
                "RESOURCE_EXHAUSTED",
                f"Sent message larger than max ({len(payload)} vs. {limit})",
            )
        if not call.headers_sent:
            self.send_headers(call)
        call.sent_bytes += len(payload)
        data = encode_message(payload)
        # Sent at this iteration's flush, with whatever else the call wrote by then in
        # the same DATA frame: under load the answers of many calls are written in one
        # iteration, and each frame costs both ends more in h2 than its bytes do.
        call.outbound.append(memoryview(data))
        call.outbound_size += len(data)
        self._sending[call.stream_id] = call
        self._schedule_flush()

    def finish(self, call: ServerCall, code: str, message: str, trailing: Metadata = ()) -> None:
        """End the call with a status (and ``trailing`` metadata): trailers now, or
        after the DATA still queued (OK only)."""
        if call.finished:
            return
        trailers = [(b"grpc-status", _STATUS.get(code, b"2"))]
        if message:
            trailers.append((b"grpc-message", encode_status_message(message).encode("ascii")))
        _add_metadata(trailers, trailing)
        self.finish_raw(call, trailers, code == "OK")

    def finish_raw(self, call: ServerCall, trailers: RawHeaders, ok: bool) -> None:
        """``finish`` with trailers as relayed: ``grpc-status`` (any code),
        ``grpc-message`` still encoded, metadata with ``-bin`` values in base64."""
        if call.finished:
            return
        call.finished = True
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        trailers = list(trailers)
        if not call.headers_sent:
            trailers[:0] = _RESPONSE_HEADERS
        elif not ok and call.outbound:
            # An error ends the stream now: what the window allows still goes first (as
            # it would have gone had it been sent at once); the rest is moot.
            self._send_window(call)
            call.outbound.clear()
            call.outbound_size = 0
        elif call.outbound:
            call.trailers = trailers
            return
        self._end(call, trailers)

    def acknowledge(self, stream_id: int, size: int) -> None:
        self._h2.acknowledge_received_data(size, stream_id)
        self._schedule_flush()

    def _end(self, call: ServerCall, trailers: list[tuple[bytes, bytes]]) -> None:
        stream_id = call.stream_id
        self._h2.send_headers(stream_id, trailers, end_stream=True)
        self._stop_reading(stream_id)
        self._blocked.pop(stream_id, None)
        if self._calls.pop(stream_id, None) is not None:
            self._after_call()
        call.wake_writer()
        self._schedule_flush()

    def _send_window(self, call: ServerCall) -> None:
        """Send queued messages as the windows allow, as few DATA frames as they fit in."""
        h2 = self._h2
        stream_id = call.stream_id
        outbound = call.outbound
        while outbound:
            room = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)
            if room <= 0:
                break
            pieces = []
            size = 0
            while outbound and size < room:
                chunk = outbound[0]
                take = min(room - size, len(chunk))
                pieces.append(chunk[:take])
                if take == len(chunk):
                    outbound.popleft()
                else:
                    outbound[0] = chunk[take:]
                size += take
            send_data(h2, stream_id, pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces))
            call.outbound_size -= size

    def _pump(self, call: ServerCall) -> None:
        self._send_window(call)
        stream_id = call.stream_id
        if call.outbound:
            self._blocked[stream_id] = call
            return
        self._blocked.pop(stream_id, None)
        if call.trailers is not None:
            self._end(call, call.trailers)
        call.wake_writer()

    def _pump_blocked(self) -> None:
        for call in list(self._blocked.values()):
            self._pump(call)
        self._schedule_flush()

    def _fail(self, call: ServerCall, code: str, message: str) -> None:
        self.finish(call, code, message)
        call.cancel()

    @staticmethod
    def _trailers_only(code: str, message: str) -> list[tuple[bytes, bytes]]:
        return [
            *_RESPONSE_HEADERS,
            (b"grpc-status", _STATUS[code]),
            (b"grpc-message", encode_status_message(message).encode("ascii")),
        ]

    # ------------------------------------------------------------ writing, liveness, closing

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._sending:
            # Still marked pending: what the pumps schedule goes out in this write.
            sending, self._sending = self._sending, {}
            calls = self._calls
            for stream_id, call in sending.items():
                if calls.get(stream_id) is call:  # not reset or lost meanwhile
                    self._pump(call)
        self._flush_pending = False
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _stop_reading(self, stream_id: int) -> None:
        """After our END_STREAM: a caller still sending is told to stop (as gRPC core does)."""
        stream = self._h2.streams.get(stream_id)
        if stream is not None and not stream.closed:
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)

    def _after_call(self) -> None:
        """A call has left the table (answered or reset)."""


def _add_metadata(headers: list[tuple[bytes, bytes]], metadata: Metadata) -> None:
    """Metadata onto HTTP/2 headers: names lower-cased, ``-bin`` (bytes) values base64."""
    for key, value in metadata:
        name = key.lower().encode("ascii")
        if isinstance(value, bytes):
            headers.append((name, base64.b64encode(value).rstrip(b"=")))
        else:
            headers.append((name, value.encode("utf-8")))
