"""One HTTP/2 connection of the lean gRPC client: an ``asyncio.Protocol`` driving
an ``h2`` client connection, its streams, keepalive pings and GOAWAY.

Writes are coalesced: whatever the calls of one loop iteration asked for goes
out in one socket write, scheduled with ``call_soon`` (no task in between)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from proxy.core.version import RUNTIME_VERSION
from proxy.grpcwire.buffered_reads import BufferedReads
from proxy.grpcwire.client_status import RpcError, Status
from proxy.grpcwire.client_stream import ClientStream, StreamListener
from proxy.grpcwire.data_frames import InboundFrames, send_data
from proxy.grpcwire.messages import format_timeout

if TYPE_CHECKING:
    from hyperframe.frame import Frame, GoAwayFrame  # h2's own frame layer

# Receive windows: wide enough that a peer never waits for us on a healthy loop,
# and a stream's window bounds what a slow reader buffers (see ClientStream.read).
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
USER_AGENT = b"grpc-python-tether/" + RUNTIME_VERSION.removeprefix("tether-").encode()

Metadata = Sequence[tuple[bytes, bytes]]


class _GracefulH2(h2.connection.H2Connection):
    """h2 closes its state machine on a GOAWAY and drops its unsent bytes
    (python-hyper/h2#1181), refusing the frames of streams the server still
    finishes; HTTP/2 lets those finish, and grpcio's graceful shutdown relies on
    it. So a GOAWAY only reports the event here; ``open`` refuses new streams."""

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = h2.errors.ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Limits and liveness of a connection (seconds), as grpcio's channel options."""

    max_message_size: int = 4 * 1024 * 1024
    connect_timeout: float = 2.0
    keepalive_time: float = 10.0
    keepalive_timeout: float = 5.0


class ClientConnection(BufferedReads):
    def __init__(self, settings: ClientSettings, authority: str, scheme: bytes) -> None:
        self._settings = settings
        self._authority = authority.encode("ascii")
        self._scheme = scheme
        self._h2 = _GracefulH2(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._inbound = InboundFrames(self._h2)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, ClientStream] = {}
        self._blocked: set[ClientStream] = set()
        # Streams with messages written since the last flush (a dict: kept in order).
        self._sending: dict[ClientStream, None] = {}
        self._flush_scheduled = False
        self._draining = False  # GOAWAY received or close() called: no new streams
        self._failure: Status | None = None
        self._last_seen = self._loop.time()
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping_deadline: asyncio.TimerHandle | None = None
        self._ping_sent_at = 0.0
        self.lost: asyncio.Future[None] = self._loop.create_future()  # the transport is gone

    # ------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        h2conn = self._h2
        h2conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024,
            },
        )
        h2conn.initiate_connection()
        h2conn.increment_flow_control_window(CONNECTION_WINDOW - 65_535)
        transport.write(h2conn.data_to_send())
        self._keepalive = self._loop.call_later(self._settings.keepalive_time, self._keepalive_due)

    def data_received(self, data: bytes) -> None:
        self._last_seen = self._loop.time()
        for chunk in self._inbound.for_h2(data, self._on_data):
            try:
                events = self._h2.receive_data(chunk)
            except h2.exceptions.ProtocolError as exc:
                self._fail(Status("INTERNAL", f"HTTP/2 protocol error from peer: {exc}"))
                return
            self._dispatch(events)
        self._flush()

    def _dispatch(self, events: list[h2.events.Event]) -> None:
        streams = self._streams
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                size = event.flow_controlled_length or 0
                self._on_data(event.stream_id or 0, event.data or b"", size)
            elif isinstance(event, h2.events.ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_headers(list(event.headers or ()), event.stream_ended is not None)
            elif isinstance(event, h2.events.TrailersReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_trailers(list(event.headers or ()))
            elif isinstance(event, h2.events.StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_end()
            else:
                self._other_event(event)

    def _on_data(self, stream_id: int, data: bytes, size: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.on_data(data, size)
        elif size:
            self.acknowledge(stream_id, size)

    def _other_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.StreamReset):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.on_reset(int(event.error_code or 0))
        elif isinstance(event, h2.events.WindowUpdated):
            self._pump(event.stream_id or 0)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._pump(0)  # the initial window may have grown
        elif isinstance(event, h2.events.PingAckReceived):
            self._ping_answered()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event.last_stream_id or 0, int(event.error_code or 0))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = f": {exc}" if exc is not None else ""
        self._fail(Status("UNAVAILABLE", f"connection lost{reason}"))
        if not self.lost.done():
            self.lost.set_result(None)

    # ------------------------------------------------------------------ streams

    @property
    def usable(self) -> bool:
        """True while new calls may start here."""
        return not self._draining and self._failure is None and self._transport is not None

    def open(
        self,
        path: str,
        metadata: Metadata = (),
        timeout: float | None = None,
        listener: StreamListener | None = None,
    ) -> ClientStream:
        """Start a call; its headers go out with this iteration's write. Raises RpcError."""
        if not self.usable:
            raise RpcError("UNAVAILABLE", "connection is closing", refused=True)
        h2conn = self._h2
        stream_id = h2conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", self._scheme),
            (b":path", path.encode("ascii")),
            (b":authority", self._authority),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (b"user-agent", USER_AGENT),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", format_timeout(timeout).encode("ascii")))
        headers.extend(metadata)
        try:
            h2conn.send_headers(stream_id, headers)
        except h2.exceptions.TooManyStreamsError as exc:
            raise RpcError("UNAVAILABLE", "too many concurrent streams", refused=True) from exc
        stream = ClientStream(self, stream_id, self._settings.max_message_size, listener)
        self._streams[stream_id] = stream
        if timeout is not None:
            stream.set_deadline(self._loop.call_later(timeout, stream.deadline_passed))
        self._schedule_flush()
        return stream

    def sending(self, stream: ClientStream, queued: int) -> bool:
        """``stream`` has messages to send: pumped at this iteration's flush. True when
        the windows let all ``queued`` bytes go then."""
        self._sending[stream] = None
        self._schedule_flush()
        return queued <= self._h2.local_flow_control_window(stream.stream_id)

    def send_some(self, stream_id: int, buffer: bytearray) -> int:
        """Send as much of ``buffer`` as the windows allow; how many bytes went."""
        h2conn = self._h2
        frame = h2conn.max_outbound_frame_size
        sent = 0
        try:
            window = h2conn.local_flow_control_window(stream_id)
            while sent < len(buffer) and window > 0:
                size = min(window, frame, len(buffer) - sent)
                send_data(h2conn, stream_id, bytes(buffer[sent : sent + size]))
                sent += size
                window -= size
        except h2.exceptions.StreamClosedError:
            return len(buffer)  # the stream is gone; its status says why
        if sent:
            self._schedule_flush()
        return sent

    def send_end(self, stream_id: int) -> None:
        try:
            self._h2.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            return
        self._schedule_flush()

    def blocked(self, stream: ClientStream) -> None:
        self._blocked.add(stream)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Give received bytes back to the peer's windows (inside ``data_received``)."""
        self._h2.acknowledge_received_data(size, stream_id)

    def give_back(self, stream_id: int, size: int) -> None:
        """``acknowledge`` from outside ``data_received``: the update must be written too."""
        self._h2.acknowledge_received_data(size, stream_id)
        self._schedule_flush()

    def stream_done(self, stream: ClientStream, reset: bool) -> None:
        self._streams.pop(stream.stream_id, None)
        self._blocked.discard(stream)
        if self._failure is None and self._transport is not None:
            # Also after the server's status while our side is open: frees the h2 stream.
            code = h2.errors.ErrorCodes.CANCEL if reset else h2.errors.ErrorCodes.NO_ERROR
            with contextlib.suppress(h2.exceptions.ProtocolError):  # closed both ways already
                self._h2.reset_stream(stream.stream_id, code)
            self._schedule_flush()
            if self._draining and not self._streams:
                self._close_transport()

    def _pump(self, stream_id: int) -> None:
        if not self._blocked:
            return
        for stream in list(self._blocked):
            if stream_id == 0 or stream.stream_id == stream_id:
                self._blocked.discard(stream)
                stream.pump()
        self._schedule_flush()

    # ------------------------------------------------------------------ writing

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._sending:
            # Still marked scheduled: what the pumps schedule goes out in this write.
            sending, self._sending = self._sending, {}
            for stream in sending:
                stream.pump()
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    # ------------------------------------------------------------------ liveness

    def _keepalive_due(self) -> None:
        settings = self._settings
        quiet = self._loop.time() - self._last_seen
        if quiet < settings.keepalive_time:
            # Frames arrived since: the peer is alive; look again when it may not be.
            self._keepalive = self._loop.call_later(
                settings.keepalive_time - quiet, self._keepalive_due
            )
            return
        if self._transport is None or self._failure is not None:
            return
        self._ping_sent_at = self._loop.time()
        self._h2.ping(b"tetherka")
        self._flush()
        self._ping_deadline = self._loop.call_later(settings.keepalive_timeout, self._ping_late)

    def _ping_answered(self) -> None:
        if self._ping_deadline is not None:
            self._ping_deadline.cancel()
            self._ping_deadline = None
            self._keepalive = self._loop.call_later(
                self._settings.keepalive_time, self._keepalive_due
            )

    def _ping_late(self) -> None:
        self._ping_deadline = None
        if self._last_seen > self._ping_sent_at:
            # Anything read since the ping proves the peer alive (a busy peer acks late).
            self._keepalive = self._loop.call_later(
                self._settings.keepalive_time, self._keepalive_due
            )
            return
        self._fail(Status("UNAVAILABLE", "keepalive watchdog timeout"))

    # ------------------------------------------------------------------ ending

    def _goaway(self, last_stream_id: int, error_code: int) -> None:
        # Streams the server never took are safe to retry elsewhere; the rest may finish.
        self._draining = True
        refused = Status(
            "UNAVAILABLE", f"received GOAWAY (HTTP/2 error code {error_code})", refused=True
        )
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last_stream_id:
                stream.finish(refused)
        if not self._streams:
            self._close_transport()

    def drain(self) -> None:
        """Take no new calls; close once the open ones are done."""
        self._draining = True
        if not self._streams:
            self.close()

    def close(self) -> None:
        """Close now; every open call ends CANCELLED."""
        self._draining = True
        self._end_streams(Status("CANCELLED", "Channel closed!"))
        if self._transport is not None:
            try:
                self._h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
            self._close_transport()
        self._stop_timers()

    def _fail(self, status: Status) -> None:
        if self._failure is not None:
            return
        self._failure = status
        self._stop_timers()
        self._end_streams(status)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def _end_streams(self, status: Status) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        self._blocked.clear()
        for stream in streams:
            stream.finish(status)

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._flush()
            self._transport.close()

    def _stop_timers(self) -> None:
        for timer in (self._keepalive, self._ping_deadline):
            if timer is not None:
                timer.cancel()
