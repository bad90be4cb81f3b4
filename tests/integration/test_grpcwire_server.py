"""The lean gRPC server (proxy/grpcwire) spoken to by grpcio clients over loopback:
every kind of call, gRPC's errors, deadlines and cancellation reaching the
handler, metadata both ways, flow control with bodies of several MiB, mTLS, and
graceful stop. Handlers here take and return raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from certs.authority import create_authority, load_issuer, write_authority
from certs.spiffe import SpiffeId
from certs.tls import (
    channel_credentials,
    channel_options_for_peer,
    peer_spiffe_id,
    server_ssl_context,
)
from certs.workload import WorkloadIdentity, issue_workload_identity
from proxy.grpcwire.handlers import RpcMethod, stream_stream, unary_stream, unary_unary
from proxy.grpcwire.server import GrpcServer
from proxy.grpcwire.server_call import ServerCall

NOW = datetime.now(UTC)
ORDERS = SpiffeId("public", "default", "orders")
CHECKOUT = SpiffeId("public", "default", "checkout")
MAX_MESSAGE = 8 * 1024 * 1024
# Bounds every wait; none of the tests should come near it.
WAIT = 15.0
BIG = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # 6 MiB: many frames, over a window


def _raw(data: bytes) -> bytes:
    return data


@dataclass
class Seen:
    metadata: list[tuple[tuple[str, str | bytes], ...]] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _methods(seen: Seen) -> dict[str, RpcMethod]:
    async def echo(request: bytes, call: ServerCall) -> bytes:
        seen.metadata.append(call.invocation_metadata())
        seen.peers.append(call.peer)
        call.send_initial_metadata((("x-answer", "yes"), ("x-blob-bin", b"\x00\xffok")))
        return request

    async def fail(request: bytes, call: ServerCall) -> bytes:
        call.abort("NOT_FOUND", "no such thing: 100%")

    async def hang(request: bytes, call: ServerCall) -> bytes:
        seen.entered.set()
        try:
            await seen.release.wait()
        except asyncio.CancelledError:
            seen.cancelled.set()
            raise
        return b"released"

    async def count(request: bytes, call: ServerCall) -> AsyncIterator[bytes]:
        for number in range(int(request)):
            yield str(number).encode()
        yield BIG

    async def chat(requests: ServerCall, call: ServerCall) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message[::-1]

    async def writer(requests: ServerCall, call: ServerCall) -> None:
        call.send_initial_metadata(())
        async for message in requests:
            await call.write(message)

    return {
        "/test.Svc/Echo": unary_unary(echo, _raw, _raw),
        "/test.Svc/Fail": unary_unary(fail, _raw, _raw),
        "/test.Svc/Hang": unary_unary(hang, _raw, _raw),
        "/test.Svc/Count": unary_stream(count, _raw, _raw),
        "/test.Svc/Chat": stream_stream(chat, _raw, _raw),
        "/test.Svc/Writer": stream_stream(writer, _raw, _raw),
    }


@contextlib.asynccontextmanager
async def _server(
    seen: Seen, max_message: int = MAX_MESSAGE, **options: Any
) -> AsyncIterator[tuple[GrpcServer, str]]:
    server = GrpcServer(_methods(seen), max_message_size=max_message, **options)
    port = await server.listen("127.0.0.1", 0)
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE * 2),
            ("grpc.max_send_message_length", MAX_MESSAGE * 2),
        ],
    )


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test on both event loops (the sidecar runs on uvloop, whose transports differ)."""
    global _LOOP
    _LOOP = request.param
    yield
    _LOOP = "asyncio"


_LOOP = "asyncio"


def _run(test: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(WAIT):
            return await test()

    if _LOOP == "uvloop":
        import uvloop

        return uvloop.run(bounded())
    return asyncio.run(bounded())


def test_unary_with_metadata_both_ways() -> None:
    seen = Seen()

    async def main() -> None:
        async with _server(seen) as (_, address), _channel(address) as channel:
            call = channel.unary_unary("/test.Svc/Echo")(
                b"ping",
                metadata=(("x-request", "r1"), ("x-key-bin", b"\x01\x02\x03")),
                timeout=WAIT,
            )
            assert await call == b"ping"
            initial = tuple(await call.initial_metadata())
            assert ("x-answer", "yes") in initial
            assert ("x-blob-bin", b"\x00\xffok") in initial
            assert await call.code() == grpc.StatusCode.OK

    _run(main)
    metadata = dict(seen.metadata[0])
    assert metadata["x-request"] == "r1"
    assert metadata["x-key-bin"] == b"\x01\x02\x03"
    assert "content-type" not in metadata and "grpc-timeout" not in metadata
    assert seen.peers == [None]  # plaintext: no identity


def test_abort_reaches_the_client_with_code_and_message() -> None:
    async def main() -> None:
        async with _server(Seen()) as (_, address), _channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await channel.unary_unary("/test.Svc/Fail")(b"x")
            assert failure.value.code() == grpc.StatusCode.NOT_FOUND
            assert failure.value.details() == "no such thing: 100%"

    _run(main)


def test_unknown_method_is_unimplemented() -> None:
    async def main() -> None:
        async with _server(Seen()) as (_, address), _channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await channel.unary_unary("/test.Svc/Nope")(b"x")
            assert unary.value.code() == grpc.StatusCode.UNIMPLEMENTED
            stream = channel.stream_stream("/test.Svc/Nope")()
            await stream.done_writing()
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                await stream.read()
            assert streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED

    _run(main)


def test_server_stream_with_a_body_of_several_mib() -> None:
    async def main() -> list[bytes]:
        async with _server(Seen()) as (_, address), _channel(address) as channel:
            return [m async for m in channel.unary_stream("/test.Svc/Count")(b"50")]

    messages = _run(main)
    assert messages[:-1] == [str(n).encode() for n in range(50)]
    assert messages[-1] == BIG


@pytest.mark.parametrize("method", ["/test.Svc/Chat", "/test.Svc/Writer"])
def test_bidi_many_messages_both_ways_and_a_large_one(method: str) -> None:
    sent = [f"message {n}".encode() for n in range(2000)] + [BIG, b"last"]

    async def main() -> list[bytes]:
        async with _server(Seen()) as (_, address), _channel(address) as channel:
            call = channel.stream_stream(method)()

            async def send() -> None:
                for message in sent:
                    await call.write(message)
                await call.done_writing()

            sender = asyncio.create_task(send())
            received = [message async for message in call]
            await sender
            assert await call.code() == grpc.StatusCode.OK
            return received

    received = _run(main)
    if method == "/test.Svc/Chat":
        assert received == [message[::-1] for message in sent]
    else:
        assert received == sent


def test_deadline_cancels_the_handler_and_answers_deadline_exceeded() -> None:
    seen = Seen()

    async def main() -> None:
        async with _server(seen) as (_, address), _channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await channel.unary_unary("/test.Svc/Hang")(b"x", timeout=0.2)
            assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            await seen.cancelled.wait()

    _run(main)


def test_client_cancel_cancels_the_handler() -> None:
    seen = Seen()

    async def main() -> None:
        async with _server(seen) as (_, address), _channel(address) as channel:
            call = channel.unary_unary("/test.Svc/Hang")(b"x")
            await seen.entered.wait()
            call.cancel()
            await seen.cancelled.wait()

    _run(main)


def test_oversized_message_is_resource_exhausted() -> None:
    async def main() -> None:
        async with (
            _server(Seen(), max_message=1024 * 1024) as (_, address),
            _channel(address) as channel,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await channel.unary_unary("/test.Svc/Echo")(b"x" * (2 * 1024 * 1024))
            assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # The connection is still good for the next call.
            assert await channel.unary_unary("/test.Svc/Echo")(b"small") == b"small"

    _run(main)


def test_graceful_stop_lets_a_call_in_flight_finish() -> None:
    seen = Seen()

    async def main() -> bytes:
        server = GrpcServer(_methods(seen), max_message_size=MAX_MESSAGE)
        port = await server.listen("127.0.0.1", 0)
        try:
            async with _channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Svc/Hang")(b"x")
                await seen.entered.wait()
                stopping = asyncio.create_task(server.stop(WAIT))
                await asyncio.sleep(0)  # the GOAWAY goes out before the handler is released
                seen.release.set()
                answer: bytes = await call
                await stopping
                return answer
        finally:
            await server.stop(0)

    assert _run(main) == b"released"
    assert not seen.cancelled.is_set()


def test_an_idle_connection_is_closed_and_the_client_reconnects() -> None:
    async def main() -> None:
        async with (
            _server(Seen(), keepalive_time=0.05, idle_timeout=0.1) as (server, address),
            _channel(address) as channel,
        ):
            assert await channel.unary_unary("/test.Svc/Echo")(b"one") == b"one"
            while server.connections:
                await asyncio.sleep(0.02)
            assert await channel.unary_unary("/test.Svc/Echo")(b"two") == b"two"

    _run(main)


def test_a_large_frame_in_the_same_read_as_the_settings_ack_is_accepted() -> None:
    """grpcio and daprd send frames as large as we allow as soon as they acknowledge our
    settings; under load the ACK and such a frame arrive in one read."""
    import h2.config
    import h2.connection
    import h2.events

    message = b"m" * 60_000  # over the default 16 KiB frame size, within default windows

    async def main() -> tuple[bytes, dict[bytes, bytes]]:
        async with _server(Seen()) as (_, address):
            host, _, port = address.rpartition(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            client.initiate_connection()
            writer.write(client.data_to_send())
            while client.max_outbound_frame_size < len(message) + 5:
                client.receive_data(await reader.read(65536))  # queues the settings ACKs
            stream = client.get_next_available_stream_id()
            client.send_headers(
                stream,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/test.Svc/Echo"),
                    (":authority", address),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
            )
            client.send_data(stream, b"\0" + len(message).to_bytes(4, "big") + message)
            client.end_stream(stream)
            writer.write(client.data_to_send())  # ACKs, headers and one large frame together
            answer, trailers = b"", {}
            while not trailers:
                data = await reader.read(65536)
                assert data, "the server closed the connection"
                for event in client.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        answer += event.data
                        client.acknowledge_received_data(event.flow_controlled_length, stream)
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = dict(event.headers)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        raise AssertionError(f"GOAWAY {event.error_code!r}")
                writer.write(client.data_to_send())
            writer.close()
            return answer, trailers

    answer, trailers = _run(main)
    assert trailers[b"grpc-status"] == b"0"
    assert answer[5:] == message


def test_a_second_server_on_the_same_port_fails() -> None:
    async def main() -> None:
        async with _server(Seen()) as (_, address):
            port = int(address.rpartition(":")[2])
            with pytest.raises(OSError):
                await GrpcServer({}, max_message_size=MAX_MESSAGE).listen("127.0.0.1", port)

    _run(main)


# --------------------------------------------------------------------------- mTLS


def _identity(directory: Path, spiffe_id: SpiffeId) -> WorkloadIdentity:
    if not (directory / "issuer.key").exists():
        write_authority(directory, create_authority(spiffe_id.trust_domain, NOW))
    return issue_workload_identity(load_issuer(directory, NOW), spiffe_id, NOW)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("ca")


def _tls_call(server_identity: WorkloadIdentity, credentials: grpc.ChannelCredentials) -> Seen:
    seen = Seen()

    context = server_ssl_context(server_identity)

    async def main() -> None:
        async with (
            _server(seen, ssl_context=context, identify=_identify) as (_, address),
            grpc.aio.secure_channel(
                address, credentials, options=channel_options_for_peer(ORDERS)
            ) as channel,
        ):
            assert await channel.unary_unary("/test.Svc/Echo")(b"tls", timeout=WAIT) == b"tls"

    _run(main)
    return seen


def _identify(peercert: Any) -> object:
    return peer_spiffe_id(peercert)


def test_mtls_identity_reaches_the_handler(ca: Path) -> None:
    seen = _tls_call(_identity(ca, ORDERS), channel_credentials(_identity(ca, CHECKOUT)))
    assert seen.peers == [CHECKOUT]


def test_mtls_client_without_certificate_is_refused(ca: Path) -> None:
    server = _identity(ca, ORDERS)
    credentials = grpc.ssl_channel_credentials(root_certificates=server.trust_bundle_pem)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        _tls_call(server, credentials)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_certificate_from_another_ca_is_refused(ca: Path, tmp_path: Path) -> None:
    server = _identity(ca, ORDERS)
    stranger = _identity(tmp_path / "other-ca", CHECKOUT)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server.trust_bundle_pem,
        private_key=stranger.private_key_pem,
        certificate_chain=stranger.certificate_chain_pem,
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        _tls_call(server, credentials)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def _own_channel(address: str) -> grpc.aio.Channel:
    """A channel with its own connection (grpcio shares them between channels by default)."""
    return grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def test_at_the_connection_cap_an_idle_connection_makes_room() -> None:
    seen = Seen()

    async def main() -> tuple[bytes, bytes]:
        async with (
            _server(seen, max_connections=2) as (server, address),
            _own_channel(address) as busy,
            _own_channel(address) as idle,
            _own_channel(address) as newcomer,
        ):
            held = busy.unary_unary("/test.Svc/Hang")(b"x")
            await seen.entered.wait()
            assert await idle.unary_unary("/test.Svc/Echo")(b"1") == b"1"
            # Both connections open; the newcomer is served in place of the idle one.
            answer: bytes = await newcomer.unary_unary("/test.Svc/Echo")(b"2")
            assert len(server.connections) <= 2
            seen.release.set()
            return answer, await held

    assert _run(main) == (b"2", b"released")


def test_at_the_connection_cap_with_every_connection_busy_a_newcomer_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()

    async def main() -> grpc.StatusCode:
        async with (
            _server(seen, max_connections=2) as (server, address),
            _own_channel(address) as first,
            _own_channel(address) as second,
            _own_channel(address) as newcomer,
        ):
            held = [first.unary_unary("/test.Svc/Hang")(b"x")]
            await seen.entered.wait()
            held.append(second.unary_unary("/test.Svc/Hang")(b"y"))
            # Until both connections carry a call (bounded by _run's timeout).
            while sum(1 for connection in server.connections if connection._calls) < 2:
                await asyncio.sleep(0.01)
            try:
                await newcomer.unary_unary("/test.Svc/Echo")(b"z", timeout=5)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            seen.release.set()
            assert [await call for call in held] == [b"released", b"released"]
            return code

    assert _run(main) is grpc.StatusCode.UNAVAILABLE
    assert "all 2 connections are busy" in caplog.text
