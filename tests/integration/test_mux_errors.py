"""Every call on the sidecar hop gets an answer, and every pending call ends.

A real callee (the internal gRPC server with tether's Multiplex service and
Dapr's ServiceInvocation, in front of the real echo app) is spoken to over
loopback mTLS with certificates from ``certs``, exactly as a caller sidecar
would. Frames whose handling fails in the callee must each be answered with
Dapr's error (a gRPC code and a message) and logged in one line; a caller whose
peer never answers must see its call fail within the call's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import any_pb2

from certs.authority import create_authority, load_issuer, write_authority
from certs.spiffe import SpiffeId
from certs.tls import (
    caller_spiffe_id,
    channel_credentials,
    channel_options_for_peer,
    client_ssl_context,
    server_ssl_context,
)
from certs.workload import WorkloadIdentity, issue_workload_identity
from proxy.app.channel import HttpAppChannel
from proxy.core.body import Body
from proxy.core.errors import InvocationFailed
from proxy.discovery.registry import Endpoint
from proxy.grpcwire.client import Channel, ClientSettings
from proxy.grpcwire.handlers import RpcMethod, stream_stream
from proxy.grpcwire.server import GrpcServer
from proxy.grpcwire.server_call import ServerCall
from proxy.hop.callee import Callee
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.internal_client import InternalClient, PeerSecurity
from proxy.hop.internal_server import ServiceInvocation
from proxy.hop.mux_client import MuxConnection
from proxy.hop.mux_server import MuxService, ParkedBodies
from proxy.hop.rpc_methods import MUX_CONNECT
from proxy.observability.tracer import Tracer
from proxy.observability.tracing_settings import TracingSettings
from proxy.protos import common_pb2, internals_pb2, internals_pb2_grpc, mux_pb2, mux_pb2_grpc
from tests.e2e.harness import App, Cluster

NOW = datetime.now(UTC)
ORDERS = SpiffeId("public", "default", "orders")
CHECKOUT = SpiffeId("public", "default", "checkout")
MAX_MESSAGE = 4 * 1024 * 1024
# Bounds every wait in these tests; none of them should come near it.
WAIT = 15.0
# A port no socket can have: connecting raises OverflowError, a defect that no
# error translation expects, standing for any bug in the callee's handling.
BROKEN_APP_PORT = 70_000


@dataclass
class Identities:
    server: WorkloadIdentity
    client: WorkloadIdentity


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    directory = tmp_path_factory.mktemp("ca")
    write_authority(directory, create_authority(ORDERS.trust_domain, NOW))
    issuer = load_issuer(directory, NOW)
    return Identities(
        issue_workload_identity(issuer, ORDERS, NOW), issue_workload_identity(issuer, CHECKOUT, NOW)
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    cluster = Cluster(tmp_path_factory.mktemp("app"))
    try:
        yield cluster.app("orders")
    finally:
        cluster.stop_all()


def _identify(peercert: object) -> CallerIdentity:
    peer = caller_spiffe_id(peercert, frozenset({"public"}))  # type: ignore[arg-type]
    return CallerIdentity(peer.app_id, peer.namespace)


@contextlib.asynccontextmanager
async def _callee_server(
    identity: WorkloadIdentity, callee: Callee, multiplex: SilentPeer | None = None
) -> AsyncIterator[str]:
    """The internal server as the sidecar builds it; ``multiplex`` replaces tether's service."""
    parked = ParkedBodies()
    service = ServiceInvocation(callee, MAX_MESSAGE)
    mux = multiplex or MuxService(callee, parked)
    server = GrpcServer(
        {**service.methods(), **mux.methods()},
        max_message_size=MAX_MESSAGE,
        ssl_context=server_ssl_context(identity),
        identify=_identify,
    )
    port = await server.listen("127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
        await parked.close()


def _channel(address: str, identities: Identities) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        address, channel_credentials(identities.client), options=channel_options_for_peer(ORDERS)
    )


def _lean_channel(address: str, identities: Identities) -> Channel:
    host, port = address.rsplit(":", 1)
    return Channel(
        host,
        int(port),
        ClientSettings(MAX_MESSAGE),
        client_ssl_context(identities.client),
        ORDERS.peer_name(),
    )


def _request(
    method: str,
    *,
    query: str = "",
    metadata: dict[str, str] | None = None,
    data: bytes = b"{}",
) -> internals_pb2.InternalInvokeRequest:
    return internals_pb2.InternalInvokeRequest(
        ver=internals_pb2.V1,
        metadata={
            name: internals_pb2.ListStringValue(values=[value])
            for name, value in (metadata or {}).items()
        },
        message=common_pb2.InvokeRequest(
            method=method,
            data=any_pb2.Any(value=data),
            content_type="application/json",
            http_extension=common_pb2.HTTPExtension(
                verb=common_pb2.HTTPExtension.POST, querystring=query
            ),
        ),
    )


def _callee(port: int) -> Callee:
    return Callee(HttpAppChannel("127.0.0.1", port), None, app_id="orders")


async def _exchange(
    address: str, identities: Identities, requests: list[internals_pb2.InternalInvokeRequest]
) -> dict[int, mux_pb2.MuxFrame]:
    """Send every request on one Connect stream; collect one answer per call id."""
    async with _channel(address, identities) as channel:
        call = mux_pb2_grpc.MultiplexStub(channel).Connect()
        for call_id, request in enumerate(requests, start=1):
            await call.write(mux_pb2.MuxFrame(call_id=call_id, request=request))
        answers: dict[int, mux_pb2.MuxFrame] = {}
        async with asyncio.timeout(WAIT):
            while len(answers) < len(requests):
                frame = await call.read()
                assert frame is not grpc.aio.EOF, answers
                answers[frame.call_id] = frame
        await call.done_writing()
        # Until the handler has returned: closing the channel under it races its end
        # (grpcio then logs the handler's CancelledError, which the tests count).
        assert await call.read() is grpc.aio.EOF
        return answers


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


BAD_FRAMES: dict[str, tuple[internals_pb2.InternalInvokeRequest, str]] = {
    "header name with CR/LF": (
        _request("a", metadata={"X-Bad\r\nInjected": "v"}),
        "error invoking app channel: invalid header field name 'x-bad\\r\\ninjected'",
    ),
    "header name with a space": (
        _request("b", metadata={"X Bad": "v"}),
        "error invoking app channel: invalid header field name 'x bad'",
    ),
    "header name beyond latin-1": (
        _request("c", metadata={"X-Zähler-€": "v"}),
        "error invoking app channel: invalid header field name 'x-zähler-€'",
    ),
    "query with a space": (
        _request("d", query="a=1 2"),
        "error invoking app channel: invalid query 'a=1 2'",
    ),
    "query with CR/LF": (
        _request("e", query="a=1\r\nX-Injected: 1"),
        "error invoking app channel: invalid query 'a=1\\r\\nX-Injected: 1'",
    ),
}


def test_every_bad_frame_is_answered_with_an_error(
    identities: Identities, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(app.received())
    cases = list(BAD_FRAMES.values())

    async def main() -> dict[int, mux_pb2.MuxFrame]:
        async with _callee_server(identities.server, _callee(app.port)) as address:
            # The good call last: the stream still serves after the bad ones.
            return await _exchange(
                address, identities, [request for request, _ in cases] + [_request("good")]
            )

    with caplog.at_level(logging.DEBUG):
        answers = asyncio.run(main())

    for call_id, (name, (_, message)) in enumerate(BAD_FRAMES.items(), start=1):
        answer = answers[call_id]
        assert answer.HasField("error"), name
        assert not answer.HasField("response"), name
        assert (answer.error.code, answer.error.message) == (13, message), name  # INTERNAL
    good = answers[len(cases) + 1]
    assert good.response.status.code == 200
    received = app.received()[before:]
    assert [entry["path"] for entry in received] == ["/good"]
    _no_tracebacks(caplog)


def test_method_beyond_latin1_reaches_the_app_percent_encoded(
    identities: Identities, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    # Go's URL (so daprd) percent-encodes such a method as UTF-8; so does tether.
    async def main() -> dict[int, mux_pb2.MuxFrame]:
        async with _callee_server(identities.server, _callee(app.port)) as address:
            return await _exchange(address, identities, [_request("заказ/new order")])

    with caplog.at_level(logging.DEBUG):
        answers = asyncio.run(main())

    assert answers[1].response.status.code == 200
    assert app.received()[-1]["path"] == "/%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7/new%20order"
    _no_tracebacks(caplog)


def test_a_defect_in_the_callee_answers_every_frame_and_logs_one_line(
    identities: Identities, caplog: pytest.LogCaptureFixture
) -> None:
    frames = 3

    async def main() -> dict[int, mux_pb2.MuxFrame]:
        async with _callee_server(identities.server, _callee(BROKEN_APP_PORT)) as address:
            return await _exchange(address, identities, [_request("x")] * frames)

    with caplog.at_level(logging.DEBUG):
        answers = asyncio.run(main())

    assert sorted(answers) == [1, 2, 3]
    for answer in answers.values():
        assert answer.error.code == 13  # INTERNAL
        assert answer.error.message == (
            "error invoking app channel: connect(): port must be 0-65535."
        )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == frames, [r.getMessage() for r in errors]
    assert all("\n" not in r.getMessage() for r in errors)
    _no_tracebacks(caplog)


# --------------------------------------------------------------------------- CallLocal


async def _call_local(
    address: str, identities: Identities, request: internals_pb2.InternalInvokeRequest
) -> grpc.aio.AioRpcError:
    async with _channel(address, identities) as channel:
        stub = internals_pb2_grpc.ServiceInvocationStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.CallLocal(request, timeout=WAIT)
        return failure.value


def test_call_local_errors_name_no_python_class(
    identities: Identities, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> list[grpc.aio.AioRpcError]:
        async with _callee_server(identities.server, _callee(BROKEN_APP_PORT)) as broken:
            defect = await _call_local(broken, identities, _request("x"))
        async with _callee_server(identities.server, _callee(app.port)) as address:
            header = await _call_local(address, identities, _request("y", metadata={"A B": "v"}))
        return [defect, header]

    with caplog.at_level(logging.DEBUG):
        defect, header = asyncio.run(main())

    assert defect.code() == grpc.StatusCode.INTERNAL
    assert defect.details() == "error invoking app channel: connect(): port must be 0-65535."
    assert header.code() == grpc.StatusCode.INTERNAL
    assert header.details() == "error invoking app channel: invalid header field name 'a b'"
    _no_tracebacks(caplog)


# --------------------------------------------------------------------------- spans


def test_callee_spans_name_the_rpc_that_carried_the_call(identities: Identities, app: App) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer = Tracer(TracingSettings(sampling_rate=1.0), "orders", exporter=exporter)
    callee = Callee(HttpAppChannel("127.0.0.1", app.port), None, tracer=tracer, app_id="orders")

    async def main() -> None:
        async with (
            _callee_server(identities.server, callee) as address,
            _channel(address, identities) as channel,
        ):
            stub = internals_pb2_grpc.ServiceInvocationStub(channel)
            await stub.CallLocal(_request("unary"), timeout=WAIT)
            stream = stub.CallLocalStream(timeout=WAIT)
            first = _request("streamed")
            first.message.ClearField("data")
            await stream.write(internals_pb2.InternalInvokeRequestStream(request=first))
            await stream.done_writing()
            replies = [m async for m in stream]
            assert replies[0].response.status.code == 200
            await _exchange(address, identities, [_request("multiplexed")])

    try:
        asyncio.run(main())
    finally:
        assert tracer.shutdown(timeout=WAIT)

    apis = {
        span.attributes["dapr.invoke_method"]: span.attributes["dapr.api"]
        for span in exporter.get_finished_spans()
        if span.attributes is not None
    }
    assert apis == {
        "unary": "/dapr.proto.internals.v1.ServiceInvocation/CallLocal",
        "streamed": "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream",
        "multiplexed": "/tether.internal.v1.Multiplex/Call",
    }


# --------------------------------------------------------------------------- caller side


class SilentPeer:
    """A peer that takes calls and never answers them (``end`` closes the stream after one)."""

    def __init__(self, end: bool = False) -> None:
        self.end = end
        self.received: list[int] = []

    def methods(self) -> dict[str, RpcMethod]:
        frames = mux_pb2.MuxFrame
        return {
            MUX_CONNECT: stream_stream(self.Connect, frames.FromString, frames.SerializeToString)
        }

    async def Connect(
        self, request_iterator: AsyncIterator[mux_pb2.MuxFrame], context: ServerCall
    ) -> AsyncIterator[mux_pb2.MuxFrame]:
        context.send_initial_metadata(())  # accepts the stream, as tether's peer does
        async for frame in request_iterator:
            self.received.append(frame.call_id)
            if self.end:
                return
        if False:  # a streaming handler, answering nothing
            yield mux_pb2.MuxFrame()


def test_a_call_the_peer_never_answers_fails_within_its_bound(
    identities: Identities, app: App
) -> None:
    peer = SilentPeer()

    async def main() -> InvocationFailed:
        async with _callee_server(identities.server, _callee(app.port), peer) as address:
            channel = _lean_channel(address, identities)
            connection = MuxConnection(channel)
            try:
                async with asyncio.timeout(WAIT):
                    with pytest.raises(InvocationFailed) as failure:
                        await connection.invoke(_request("x"), b"{}", timeout=0.2)
            finally:
                await connection.close()
                channel.close()
            return failure.value

    failure = asyncio.run(main())

    assert failure.grpc_code == "DEADLINE_EXCEEDED"
    assert str(failure) == "context deadline exceeded"
    assert peer.received == [1]


def test_the_client_bounds_a_multiplexed_call_unless_a_policy_does(
    identities: Identities, app: App
) -> None:
    peer = SilentPeer()

    def grpc_security(
        expected: SpiffeId,
    ) -> tuple[grpc.ChannelCredentials, list[tuple[str, str]]]:
        return channel_credentials(identities.client), channel_options_for_peer(expected)

    security = PeerSecurity(
        grpc_security, client_ssl_context(identities.client), frozenset({"public"})
    )

    async def main() -> tuple[InvocationFailed, bool]:
        async with _callee_server(identities.server, _callee(app.port), peer) as address:
            client = InternalClient(security, MAX_MESSAGE, mux_call_timeout=0.2)
            host, port = address.rsplit(":", 1)
            endpoint = Endpoint(host, int(port))
            try:
                async with asyncio.timeout(WAIT):
                    with pytest.raises(InvocationFailed) as failure:
                        await client.invoke(endpoint, ORDERS, _request("x"), Body(b"{}"))
                # With a resiliency timeout the policy bounds the call, not the transport:
                # still pending after several of the transport's bounds.
                pending = client.invoke(
                    endpoint, ORDERS, _request("y"), Body(b"{}"), timeout_policy=True
                )
                try:
                    await asyncio.wait_for(pending, 1.0)
                    policy_bound = False
                except TimeoutError:
                    policy_bound = True
            finally:
                await client.close()
            return failure.value, policy_bound

    failure, policy_bound = asyncio.run(main())

    assert failure.grpc_code == "DEADLINE_EXCEEDED"
    assert policy_bound
    assert peer.received == [1, 2]


def test_pending_calls_fail_when_the_stream_ends(identities: Identities, app: App) -> None:
    peer = SilentPeer(end=True)

    async def main() -> InvocationFailed:
        async with _callee_server(identities.server, _callee(app.port), peer) as address:
            channel = _lean_channel(address, identities)
            connection = MuxConnection(channel)
            try:
                async with asyncio.timeout(WAIT):
                    with pytest.raises(InvocationFailed) as failure:
                        await connection.invoke(_request("x"), b"{}", timeout=None)
            finally:
                await connection.close()
                channel.close()
            assert connection.broken
            return failure.value

    failure = asyncio.run(main())

    assert failure.grpc_code == "UNAVAILABLE"
    assert peer.received == [1]
