"""The caller half of the sidecar hop: per peer, one lean gRPC connection carrying
tether's multiplexed stream, and (made when first needed) a grpcio channel for
``CallLocalStream`` with bodies streamed in both directions."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from certs.spiffe import SpiffeId
from proxy.core.body import Body
from proxy.core.errors import InvocationFailed
from proxy.discovery.registry import Endpoint
from proxy.discovery.resolution_settings import PeerLiveness
from proxy.grpcwire.client import Channel, ClientSettings
from proxy.grpcwire.peer import PeerCheck
from proxy.hop.grpc_tuning import channel_options
from proxy.hop.grpcio_calls import raise_if_body_failed, read_rest, translate, write_rest
from proxy.hop.mux_client import MuxConnection, MuxUnsupported
from proxy.hop.peer_identity import callee_verifier
from proxy.hop.rpc_methods import CALL_LOCAL, CALL_LOCAL_STREAM, MUX_CALL
from proxy.hop.wire import INLINE_LIMIT, MUX_CALL_TIMEOUT
from proxy.observability.trace_propagation import grpc_trace_metadata, metadata_trace
from proxy.protos import internals_pb2, internals_pb2_grpc

# How long connections made with a replaced certificate may finish their calls.
DRAIN_GRACE = 30.0

# Builds (credentials, extra channel options) for a peer; None means plaintext.
SecurityFactory = Callable[[SpiffeId], tuple[grpc.ChannelCredentials, list[tuple[str, str]]]]


@dataclass(frozen=True, slots=True)
class PeerSecurity:
    """mTLS to other sidecars, for both clients; each pins the callee to its SPIFFE ID."""

    grpc_channel: SecurityFactory  # grpcio, for CallLocal/CallLocalStream
    ssl_context: ssl.SSLContext  # the lean client (tether's multiplexed stream)
    # Where a callee's SPIFFE ID may live (see peer_identity.accepted_trust_domains).
    trust_domains: frozenset[str]

    def server_name(self, peer: SpiffeId) -> str:
        # Our issuer binds this DNS SAN to the SPIFFE ID (see channel_options_for_peer).
        return peer.peer_name()

    def verifier(self, peer: SpiffeId) -> PeerCheck:
        """The lean client's check of the callee's certificate: exactly one SPIFFE ID,
        ``peer``'s namespace and app ID exactly, in an accepted trust domain."""
        return callee_verifier(peer, self.trust_domains)


@dataclass(frozen=True, slots=True)
class _PeerChannel:
    channel: grpc.aio.Channel
    invocation: Any  # ServiceInvocationStub (generated, untyped)


@dataclass(slots=True)
class RemoteResponse:
    status: int
    headers: Mapping[str, Sequence[str]]  # the response's own repeated fields, read only
    content_type: str
    body: Body
    method: str  # which transport carried it (one of the names above)
    # A gRPC app's answer (status code below 100): the whole head, for the caller's mapping.
    grpc_head: internals_pb2.InternalInvokeResponse | None = None


@dataclass(slots=True)
class HopRpc:
    """The RPC carrying a call, kept current as the client falls back between
    transports, so a caller can label a call that failed or was cancelled."""

    method: str = CALL_LOCAL_STREAM


class InternalClient:
    def __init__(
        self,
        security: PeerSecurity | None,
        max_message_size: int,
        mux_call_timeout: float = MUX_CALL_TIMEOUT,
        liveness: PeerLiveness | None = None,
    ) -> None:
        self._security = security
        self._mux_call_timeout = mux_call_timeout
        live = liveness or PeerLiveness()
        self._options = channel_options(
            max_message_size,
            connect_timeout=live.connect_timeout,
            keepalive_time=live.keepalive_time,
            keepalive_timeout=live.keepalive_timeout,
        )
        self._lean_settings = ClientSettings(
            max_message_size,
            connect_timeout=live.connect_timeout,
            keepalive_time=live.keepalive_time,
            keepalive_timeout=live.keepalive_timeout,
        )
        # grpcio channels, made only for calls that need them (daprd peers, large bodies).
        self._channels: dict[tuple[str, SpiffeId], _PeerChannel] = {}
        # The lean client's connections, each with its Connect stream.
        self._lean: dict[tuple[str, SpiffeId], Channel] = {}
        self._mux: dict[tuple[str, SpiffeId], MuxConnection] = {}
        # Peers that answered UNIMPLEMENTED to Multiplex/Connect (daprd).
        self._without_mux: set[str] = set()
        # Connections made with replaced credentials, finishing their calls (rotate()).
        self._retiring: set[asyncio.Task[None]] = set()

    def _peer(self, key: tuple[str, SpiffeId]) -> _PeerChannel:
        cached = self._channels.get(key)
        if cached is not None:
            return cached
        address, peer = key
        if self._security is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
        else:
            credentials, extra = self._security.grpc_channel(peer)
            channel = grpc.aio.secure_channel(
                address, credentials, options=[*self._options, *extra]
            )
        created = _PeerChannel(channel, internals_pb2_grpc.ServiceInvocationStub(channel))
        self._channels[key] = created
        return created

    def _lean_channel(self, endpoint: Endpoint, key: tuple[str, SpiffeId]) -> Channel:
        channel = self._lean.get(key)
        if channel is None:
            security = self._security
            if security is None:
                channel = Channel(endpoint.host, endpoint.port, self._lean_settings)
            else:
                channel = Channel(
                    endpoint.host,
                    endpoint.port,
                    self._lean_settings,
                    security.ssl_context,
                    security.server_name(key[1]),
                    security.verifier(key[1]),
                )
            self._lean[key] = channel
        return channel

    def channel_to(self, endpoint: Endpoint, peer: SpiffeId) -> Channel:
        """The lean connection to a peer's internal port (mTLS, the callee checked), the
        one the multiplexed stream rides: gRPC proxying opens its calls on it."""
        return self._lean_channel(endpoint, (endpoint.address, peer))

    def rotate(self, security: PeerSecurity, drain_grace: float = DRAIN_GRACE) -> None:
        """Renewed credentials: new connections are made with ``security``; the open ones
        take no new calls and close once theirs are done (after ``drain_grace`` s at most)."""
        self._security = security
        mux, lean, channels = self._mux, self._lean, self._channels
        self._mux, self._lean, self._channels = {}, {}, {}
        loop = asyncio.get_running_loop()
        retiring = [
            _retire_lean(mux.get(key), channel, drain_grace) for key, channel in lean.items()
        ]
        # grpcio: close(grace) refuses new calls at once and lets the open ones run.
        retiring += [_retire_grpc(cached.channel, drain_grace) for cached in channels.values()]
        for closing in retiring:
            task = loop.create_task(closing)
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def discard(self, endpoint: Endpoint, peer: SpiffeId) -> None:
        """Drop a peer's connections after a connection-level failure so the next call redials."""
        key = (endpoint.address, peer)
        connection = self._mux.pop(key, None)
        if connection is not None:
            asyncio.get_running_loop().create_task(connection.close())
        lean = self._lean.pop(key, None)
        if lean is not None:
            lean.close()
        cached = self._channels.pop(key, None)
        if cached is not None:
            asyncio.get_running_loop().create_task(cached.channel.close())

    async def invoke(
        self,
        endpoint: Endpoint,
        peer: SpiffeId,
        request: internals_pb2.InternalInvokeRequest,
        body: Body,
        *,
        timeout_policy: bool = False,
        rpc: HopRpc | None = None,
    ) -> RemoteResponse:
        """Send the request and return once the callee's response headers arrive.

        Small whole bodies ride tether's multiplexed stream when the peer has
        it; everything else (and every daprd peer) uses Dapr's CallLocalStream.
        ``timeout_policy`` says a resiliency timeout bounds the call; without
        one a multiplexed call waits at most ``mux_call_timeout`` for its answer.
        Raises InvocationFailed with the gRPC code name when the call fails
        before a response exists. ``rpc`` follows the transport in use.
        """
        rpc = rpc if rpc is not None else HopRpc()
        key = (endpoint.address, peer)
        if body.complete and len(body.head) <= INLINE_LIMIT and key[0] not in self._without_mux:
            rpc.method = MUX_CALL
            try:
                timeout = None if timeout_policy else self._mux_call_timeout
                return await self._invoke_mux(endpoint, key, request, body.head, timeout)
            except MuxUnsupported:
                self._without_mux.add(key[0])
                lean = self._lean.pop(key, None)
                if lean is not None:
                    lean.close()  # a daprd peer: nothing else rides this connection
        rpc.method = CALL_LOCAL_STREAM
        return await self._invoke_stream(self._peer(key).invocation, request, body, rpc)

    async def _invoke_mux(
        self,
        endpoint: Endpoint,
        key: tuple[str, SpiffeId],
        request: internals_pb2.InternalInvokeRequest,
        data: bytes,
        timeout: float | None,
    ) -> RemoteResponse:
        connection = self._mux.get(key)
        if connection is None or connection.broken:
            connection = MuxConnection(self._lean_channel(endpoint, key))
            self._mux[key] = connection
        response, body = await connection.invoke(request, data, timeout)
        return _remote_response(response, body, MUX_CALL)

    async def _invoke_stream(
        self, stub: Any, request: internals_pb2.InternalInvokeRequest, body: Body, rpc: HopRpc
    ) -> RemoteResponse:
        call = stub.CallLocalStream(metadata=grpc_trace_metadata(metadata_trace(request)))
        first = internals_pb2.InternalInvokeRequestStream(request=request)
        if body.head:
            first.payload.data = body.head
            first.payload.seq = 0
        writer: asyncio.Task[None] | None = None
        try:
            await call.write(first)
            if body.complete:
                await call.done_writing()
            else:
                assert body.rest is not None
                writer = asyncio.get_running_loop().create_task(
                    write_rest(call, body.rest, 1 if body.head else 0)
                )
            leading = await call.read()
        except asyncio.CancelledError:
            raise_if_body_failed(writer)
            raise
        except grpc.aio.AioRpcError as exc:
            if writer is not None:
                writer.cancel()
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED and body.complete:
                # An older peer without streaming: Dapr falls back to unary the same way.
                rpc.method = CALL_LOCAL
                return await self._invoke_unary(stub, request, body.head)
            raise translate(exc) from exc
        except BaseException:
            call.cancel()
            if writer is not None:
                writer.cancel()
            raise
        if leading is grpc.aio.EOF or not leading.HasField("response"):
            call.cancel()
            raise InvocationFailed("callee closed the stream without a response", "INTERNAL")
        head = leading.payload.data if leading.HasField("payload") else b""
        return _remote_response(
            leading.response, Body(head, read_rest(call, writer)), CALL_LOCAL_STREAM
        )

    async def _invoke_unary(
        self,
        stub: Any,
        request: internals_pb2.InternalInvokeRequest,
        data: bytes,
    ) -> RemoteResponse:
        unary = internals_pb2.InternalInvokeRequest()
        unary.CopyFrom(request)
        unary.message.data.value = data
        try:
            response = await stub.CallLocal(
                unary, metadata=grpc_trace_metadata(metadata_trace(request))
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
        return _remote_response(response, Body(response.message.data.value), CALL_LOCAL)

    async def close(self) -> None:
        retiring = list(self._retiring)
        for task in retiring:
            task.cancel()  # each closes its connections on the way out
        if retiring:
            await asyncio.wait(retiring)
        for connection in self._mux.values():
            await connection.close()
        self._mux.clear()
        for lean in self._lean.values():
            lean.close()
        self._lean.clear()
        channels = [peer.channel for peer in self._channels.values()]
        self._channels.clear()
        for channel in channels:
            await channel.close()


async def _retire_lean(mux: MuxConnection | None, lean: Channel, grace: float) -> None:
    deadline = asyncio.get_running_loop().time() + grace
    try:
        if mux is not None:
            await mux.drain(grace)
            await mux.close()
        # Proxied gRPC calls ride the same connection: they may finish too.
        await lean.drain(max(0.0, deadline - asyncio.get_running_loop().time()))
    finally:
        lean.close()
        if mux is not None:
            await mux.close()


async def _retire_grpc(channel: grpc.aio.Channel, grace: float) -> None:
    try:
        await channel.close(grace)
    except asyncio.CancelledError:
        await channel.close(None)
        raise


def _remote_response(
    response: internals_pb2.InternalInvokeResponse, body: Body, method: str
) -> RemoteResponse:
    carried = response.headers  # keys then lookups: a protobuf map's items() is slower
    return RemoteResponse(
        status=response.status.code,
        headers={key: carried[key].values for key in carried},
        content_type=response.message.content_type,
        body=body,
        method=method,
        grpc_head=response if response.status.code < 100 else None,
    )
