"""One HTTP/2 connection of the lean gRPC server: an ``asyncio.Protocol`` driving
an ``h2`` server connection. Everything a call needs happens in these callbacks
(headers, messages, flow control, deadlines, resets); only handlers run as tasks.
What h2 has to send is written once per loop iteration, so answers that are
ready together leave in one socket write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

import h2.events as ev
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from proxy.grpcwire.buffered_reads import BufferedReads
from proxy.grpcwire.data_frames import InboundFrames
from proxy.grpcwire.handlers import RpcMethod, run_streaming, run_unary
from proxy.grpcwire.messages import MessageError
from proxy.grpcwire.messages import parse_timeout as parse_grpc_timeout
from proxy.grpcwire.peer import PeerRefused
from proxy.grpcwire.server_call import ServerCall
from proxy.grpcwire.server_writer import CallWriter, ConnectionSettings

# Generous windows: a body of several MiB flows without waiting on WINDOW_UPDATEs,
# and a handler that falls behind still stops its caller (we acknowledge as it reads).
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
_DEFAULT_WINDOW = 65_535
MAX_FRAME_SIZE = 1 << 20
# grpcio's server sets no limit; a client keeps its streams beyond this waiting.
MAX_CONCURRENT_STREAMS = 4096
_LAST_STREAM_ID = 2**31 - 1
_PING = b"tetherka"

log = logging.getLogger("tether.grpcwire")


class ServerConnection(CallWriter, BufferedReads):
    def __init__(
        self,
        settings: ConnectionSettings,
        loop: asyncio.AbstractEventLoop,
        registry: set[ServerConnection],
    ) -> None:
        super().__init__(settings, loop)
        self._inbound = InboundFrames(self._h2)
        self._registry = registry  # the server's open connections
        self._peer: object = None
        # Why the peer's certificate was refused: every call then ends UNAUTHENTICATED.
        self._refused: str | None = None
        self._draining = False
        self._closing = False
        self._idle_since = loop.time()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = loop.create_future()

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are ones.
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._admitted(transport):
            self._closing = True
            transport.close()
            return
        self._registry.add(self)
        identify = self._settings.identify
        if identify is not None:
            try:
                self._peer = identify(transport.get_extra_info("peercert"))
            except PeerRefused as exc:
                self._refused = exc.reason
                log.warning(
                    "refused the gRPC client at %s: %s",
                    _address(transport.get_extra_info("peername")),
                    exc.reason,
                )
        h2 = self._h2
        h2.initiate_connection()
        # In force once the client acknowledges them (h2 tracks that).
        h2.update_settings(
            {
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            }
        )
        # Accept frames of the new size at once: h2 checks a chunk of input against the
        # size in force when the chunk arrived, so a peer's settings ACK followed in the
        # same read by a larger frame (common under load) would be a FRAME_SIZE_ERROR.
        h2.max_inbound_frame_size = MAX_FRAME_SIZE
        h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._schedule_flush()
        self._tick_handle = self.loop.call_later(self._settings.keepalive_time, self._tick)

    def data_received(self, data: bytes) -> None:
        for chunk in self._inbound.for_h2(data, self._on_stream_data):
            try:
                events = self._h2.receive_data(chunk)
            except ProtocolError:
                # The peer broke HTTP/2: h2 has queued the GOAWAY that says so.
                self._flush()
                self._close_transport()
                return
            for event in events:
                handle = _DISPATCH.get(type(event))
                if handle is not None:
                    handle(self, event)
        self._schedule_flush()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for call in list(self._calls.values()):
            call.wake_writer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        for handle in (self._tick_handle, self._ping_timer):
            if handle is not None:
                handle.cancel()
        calls, self._calls = self._calls, {}
        self._blocked.clear()
        for call in calls.values():
            call.cancel()
        if not self.lost.done():
            self.lost.set_result(None)
        self._registry.discard(self)

    # ------------------------------------------------------------ events from the peer

    def _on_request(self, event: ev.RequestReceived) -> None:
        stream_id = event.stream_id
        if self._draining:
            # After our GOAWAY: refused streams are retried by the client elsewhere.
            self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        headers = event.headers
        path = timeout = None
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b"grpc-timeout":
                timeout = value
        method = self._settings.methods.get(path) if path is not None else None
        if method is None or self._refused is not None:
            # Answered here (unless a relay takes the call): no handler runs.
            unknown = self._settings.unknown_method
            if self._refused is not None:
                found: tuple[str, str] | RpcMethod = (
                    "UNAUTHENTICATED",
                    f"peer identity refused: {self._refused}",
                )
            elif unknown is not None and path is not None:
                found = unknown(path, headers)
            else:
                found = ("UNIMPLEMENTED", f"Method not found: {path!r}")
            if not isinstance(found, RpcMethod):
                self._h2.send_headers(stream_id, self._trailers_only(*found), end_stream=True)
                self._stop_reading(stream_id)
                return
            method = found
        call = ServerCall(
            stream_id, self, headers, method, self._settings.max_message_size, self._peer
        )
        self._calls[stream_id] = call
        if timeout is not None:
            seconds = parse_grpc_timeout(timeout.decode("ascii", "replace"))
            if seconds is not None:
                call.timer = self.loop.call_later(seconds, self._deadline, call)
        if method.client_streaming:
            call.task = self.loop.create_task(run_streaming(call, call))

    def _on_data(self, event: ev.DataReceived) -> None:
        self._on_stream_data(event.stream_id, event.data, event.flow_controlled_length)

    def _on_stream_data(self, stream_id: int, data: bytes, size: int) -> None:
        call = self._calls.get(stream_id)
        if call is None or call.finished:
            self._h2.acknowledge_received_data(size, stream_id)
            return
        try:
            raw = call.reader.feed(data)
        except MessageError as exc:
            self._h2.acknowledge_received_data(size, stream_id)
            self._fail(call, exc.code, str(exc))
            return
        if not raw:
            self._h2.acknowledge_received_data(size, stream_id)  # part of a message
            return
        deserialize = call.method.deserialize
        for message in raw:
            call.received_bytes += len(message)
        try:
            messages = [deserialize(message) for message in raw]
        except Exception as exc:  # any parser's error: the caller sent what is not the type
            self._h2.acknowledge_received_data(size, stream_id)
            self._fail(call, "INTERNAL", f"Exception deserializing request: {exc}")
            return
        if call.deliver(messages, size):
            self._h2.acknowledge_received_data(size, stream_id)

    def _on_stream_ended(self, event: ev.StreamEnded) -> None:
        call = self._calls.get(event.stream_id)
        if call is None or call.finished:
            return
        if call.reader.pending:
            self._fail(call, "INTERNAL", "stream ended inside a message")
            return
        call.end_requests()
        method = call.method
        if method.client_streaming:
            return
        ok, request = call.take_unary()
        if not ok:
            self._fail(call, "INTERNAL", "a unary call needs exactly one request message")
            return
        runner = run_streaming if method.server_streaming else run_unary
        call.task = self.loop.create_task(runner(call, request))

    def _on_reset(self, event: ev.StreamReset) -> None:
        call = self._calls.pop(event.stream_id, None)
        if call is not None:
            self._blocked.pop(event.stream_id, None)
            call.cancel()  # the caller gave up: so does the handler (and its app call)
            self._after_call()

    def _on_window(self, event: ev.WindowUpdated) -> None:
        if event.stream_id == 0:
            self._pump_blocked()
        else:
            call = self._blocked.get(event.stream_id)
            if call is not None:
                self._pump(call)

    def _on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        self._pump_blocked()  # the initial window or frame size may have grown

    def _on_ping_ack(self, event: ev.PingAckReceived) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    def _on_terminated(self, event: ev.ConnectionTerminated) -> None:
        # The client said goodbye: h2 sends nothing more on this connection, so the
        # calls still open cannot be answered.
        calls, self._calls = self._calls, {}
        self._blocked.clear()
        for call in calls.values():
            call.cancel()
        self._close_transport()

    def _deadline(self, call: ServerCall) -> None:
        call.timer = None
        self._fail(call, "DEADLINE_EXCEEDED", "Deadline Exceeded")
        self._schedule_flush()

    # ------------------------------------------------------------ liveness, closing

    def _after_call(self) -> None:
        if not self._calls:
            self._idle_since = self.loop.time()
            if self._draining:
                self.close()

    def _tick(self) -> None:
        """Every keepalive interval: close an idle connection, else ping the peer."""
        settings = self._settings
        if not self._calls and self.loop.time() - self._idle_since >= settings.idle_timeout:
            self.close()
            return
        if self._ping_timer is None:
            self._h2.ping(_PING)
            self._ping_timer = self.loop.call_later(settings.keepalive_timeout, self._dead_peer)
            self._schedule_flush()
        self._tick_handle = self.loop.call_later(settings.keepalive_time, self._tick)

    def _dead_peer(self) -> None:
        self._ping_timer = None
        if self._transport is not None:
            self._transport.abort()  # its calls are cancelled in connection_lost

    def _admitted(self, transport: asyncio.Transport) -> bool:
        """Room for this connection, made by closing an idle one at the cap if need be."""
        registry = self._registry
        if len(registry) < self._settings.max_connections:
            return True
        idle = next((c for c in registry if not c._calls and not c._closing), None)
        if idle is not None:
            idle.drain()  # GOAWAY, and closed at once: it has no calls
            return True
        log.warning(
            "refused the gRPC client at %s: all %d connections are busy",
            _address(transport.get_extra_info("peername")),
            self._settings.max_connections,
        )
        return False

    def drain(self) -> None:
        """Graceful stop: GOAWAY (no new calls), close once the calls in flight end."""
        if self._draining or self._closing:
            return
        self._draining = True
        # Written by hand: h2 sends nothing more after its own GOAWAY, and the calls
        # in flight must still be answered.
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = _LAST_STREAM_ID
        goaway.error_code = 0
        self._flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(goaway.serialize())
        if not self._calls:
            self.close()

    def close(self) -> None:
        """GOAWAY naming the last call taken, then close; handlers still running are cancelled."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(ProtocolError):  # the peer already closed the connection
            self._h2.close_connection(last_stream_id=self._h2.highest_inbound_stream_id)
        self._flush()
        self._close_transport()
        calls, self._calls = self._calls, {}
        self._blocked.clear()
        for call in calls.values():
            call.cancel()

    def _close_transport(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()


def _address(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)


_DISPATCH: dict[type, Callable[[ServerConnection, Any], None]] = {
    ev.DataReceived: ServerConnection._on_data,
    ev.RequestReceived: ServerConnection._on_request,
    ev.StreamEnded: ServerConnection._on_stream_ended,
    ev.WindowUpdated: ServerConnection._on_window,
    ev.StreamReset: ServerConnection._on_reset,
    ev.RemoteSettingsChanged: ServerConnection._on_settings,
    ev.PingAckReceived: ServerConnection._on_ping_ack,
    ev.ConnectionTerminated: ServerConnection._on_terminated,
}
