"""The lean gRPC client (proxy.grpcwire) against grpcio's server on loopback: the
same wire both ways, statuses as grpcio reports them, deadlines and cancellation
reaching the server, and failures (a killed, paused or silent peer, a wrong
identity) ending every call instead of leaving it hanging.

Runs on uvloop, as the sidecar does. No timing is asserted beyond generous bounds
on noticing a failure."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import uvloop

from certs.authority import create_authority, load_issuer, write_authority
from certs.spiffe import SpiffeId
from certs.tls import client_ssl_context
from certs.workload import WorkloadIdentity, issue_workload_identity
from proxy.grpcwire.client import Channel, ClientSettings, ClientStream, RpcError, Status
from tests.integration.grpc_echo import MAX_MESSAGE, SERVICE, Seen, serve

T = TypeVar("T")
NOW = datetime.now(UTC)
ORDERS = SpiffeId("public", "default", "orders")
CHECKOUT = SpiffeId("public", "default", "checkout")
PAYMENTS = SpiffeId("public", "default", "payments")
SETTINGS = ClientSettings(MAX_MESSAGE)
# Bounds every wait; a failure must be noticed well within it.
WAIT = 20.0
ROOT = Path(__file__).resolve().parents[2]


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(WAIT * 2):
            return await main()

    return uvloop.run(bounded())


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


async def unary(channel: Channel, name: str, payload: bytes, **kwargs: object) -> bytes:
    stream = await channel.open(method(name), **kwargs)  # type: ignore[arg-type]
    stream.write(payload)
    stream.end()
    reply = await stream.read()
    status = await stream.status()
    if not status.ok:
        raise RpcError.of(status)
    assert reply is not None
    return reply


@dataclass
class Identities:
    orders: WorkloadIdentity
    checkout: WorkloadIdentity


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    directory = tmp_path_factory.mktemp("ca")
    write_authority(directory, create_authority(ORDERS.trust_domain, NOW))
    issuer = load_issuer(directory, NOW)
    return Identities(
        issue_workload_identity(issuer, ORDERS, NOW), issue_workload_identity(issuer, CHECKOUT, NOW)
    )


# --------------------------------------------------------------------------- the wire


def test_bidi_many_messages_both_ways_interleaved() -> None:
    async def main() -> tuple[list[bytes], Status]:
        seen = Seen()
        async with serve(seen) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                stream = await channel.open(method("Bidi"))
                sent = [f"message {n}".encode() * (n % 7 + 1) for n in range(500)]
                replies: list[bytes] = []
                for number, payload in enumerate(sent):
                    await stream.send(payload)
                    if number % 50 == 49:  # read some while still writing
                        while len(replies) <= number - 25:
                            reply = await stream.read()
                            assert reply is not None
                            replies.append(reply)
                stream.end()
                while (reply := await stream.read()) is not None:
                    replies.append(reply)
                assert replies == sent
                return replies, await stream.status()
            finally:
                channel.close()

    replies, status = run(main)
    assert len(replies) == 500
    assert status.ok


def test_drain_refuses_new_calls_and_lets_an_open_stream_finish() -> None:
    async def main() -> tuple[list[bytes], Status, RpcError]:
        async with serve(Seen()) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                stream = await channel.open(method("Bidi"))
                await stream.send(b"before")
                assert await stream.read() == b"before"
                draining = asyncio.get_running_loop().create_task(channel.drain(WAIT * 10))
                await asyncio.sleep(0)
                with pytest.raises(RpcError) as refused:
                    await channel.open(method("Bidi"))
                await stream.send(b"during")  # the open stream carries on
                replies = [b"before", await stream.read() or b""]
                assert not draining.done()
                stream.end()
                assert await stream.read() is None
                await draining  # returns once the last stream is done (run() bounds it)
                return replies, await stream.status(), refused.value
            finally:
                channel.close()

    replies, status, refused = run(main)
    assert replies == [b"before", b"during"]
    assert status.ok
    assert (refused.code, refused.refused) == ("UNAVAILABLE", True)


def test_a_multi_mib_message_crosses_flow_control_both_ways() -> None:
    payload = os.urandom(5 * 1024 * 1024 + 17)

    async def main() -> bytes:
        async with serve(Seen()) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                return await unary(channel, "Unary", payload)
            finally:
                channel.close()

    assert run(main) == payload[::-1]


def test_server_stream_and_metadata() -> None:
    seen = Seen()
    answered: list[ClientStream] = []

    async def main() -> list[bytes]:
        async with serve(seen) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                stream = await channel.open(method("Unary"), metadata=((b"x-tether", b"yes"),))
                stream.write(b"x")
                stream.end()
                assert await stream.read() == b"x"
                assert (await stream.status()).ok
                answered.append(stream)
                stream = await channel.open(method("Count"))
                stream.write(b"300")
                stream.end()
                replies = []
                while (reply := await stream.read()) is not None:
                    replies.append(reply)
                assert (await stream.status()).ok
                return replies
            finally:
                channel.close()

    assert run(main) == [str(n).encode() for n in range(300)]
    assert ("x-tether", "yes") in seen.metadata[0]
    # What the server sent beside the message is kept for whoever relays it.
    assert (b"x-echo-head", b"h") in answered[0].response_headers
    assert (b"x-echo-tail", b"t") in answered[0].trailers
    assert (b"grpc-status", b"0") in answered[0].trailers
    assert any(key == "user-agent" for key, _ in seen.metadata[0])


def test_a_slow_reader_holds_the_window_back_and_still_gets_everything() -> None:
    count, size = 40, 256 * 1024  # 10 MiB, several times a stream's window

    async def main() -> list[bytes]:
        async with serve(Seen()) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                stream = await channel.open(method("Chunks"))
                stream.write(f"{count}:{size}".encode())
                stream.end()
                await asyncio.sleep(0.3)  # the server fills the window meanwhile
                replies = []
                while (reply := await stream.read()) is not None:
                    replies.append(reply)
                    if len(replies) % 8 == 0:
                        await asyncio.sleep(0.05)
                assert (await stream.status()).ok
                return replies
            finally:
                channel.close()

    replies = run(main)
    assert [(len(r), r[0]) for r in replies] == [(size, n % 256) for n in range(count)]


def test_unimplemented_and_error_status_with_message() -> None:
    async def main() -> tuple[RpcError, RpcError]:
        async with serve(Seen()) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                with pytest.raises(RpcError) as missing:
                    await unary(channel, "Missing", b"")
                with pytest.raises(RpcError) as failed:
                    await unary(channel, "Fail", "bad input: 100% ünïcode\n".encode())
                # The connection still serves after both.
                assert await unary(channel, "Unary", b"ab") == b"ba"
                return missing.value, failed.value
            finally:
                channel.close()

    missing, failed = run(main)
    assert missing.code == "UNIMPLEMENTED"
    assert (failed.code, failed.message) == ("INVALID_ARGUMENT", "bad input: 100% ünïcode\n")


def test_deadline_reaches_the_server_and_ends_the_call() -> None:
    seen = Seen()

    async def main() -> RpcError:
        async with serve(seen) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                with pytest.raises(RpcError) as failure:
                    await unary(channel, "Slow", b"x", timeout=0.5)
                # The server learns of it too (its own deadline, or our RST_STREAM).
                await asyncio.wait_for(seen.cancelled.wait(), WAIT)
                return failure.value
            finally:
                channel.close()

    failure = run(main)
    assert failure.code == "DEADLINE_EXCEEDED"
    remaining = seen.time_remaining[0]
    assert remaining is not None and 0 < remaining <= 0.5


def test_cancel_reaches_the_server() -> None:
    seen = Seen()

    async def main() -> Status:
        async with serve(seen) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                stream = await channel.open(method("Slow"))
                stream.write(b"x")
                stream.end()
                while not seen.time_remaining:  # the handler runs
                    await asyncio.sleep(0.01)
                stream.cancel()
                await asyncio.wait_for(seen.cancelled.wait(), WAIT)
                return await stream.status()
            finally:
                channel.close()

    assert run(main).code == "CANCELLED"


def test_goaway_lets_open_streams_finish_and_new_calls_use_a_new_connection() -> None:
    seen = Seen()
    # grpcio sends GOAWAY once a connection is this old, and lets its streams finish.
    options = [("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 60_000)]

    async def main() -> None:
        async with serve(seen, options=options) as port:
            channel = Channel("127.0.0.1", port, SETTINGS)
            try:
                first = await channel.open(method("Bidi"))
                await first.send(b"one")
                assert await first.read() == b"one"
                await asyncio.sleep(1.0)  # past the age: GOAWAY has come
                second = await channel.open(method("Bidi"))
                await second.send(b"two")
                assert await second.read() == b"two"
                await first.send(b"still")  # the old stream goes on
                assert await first.read() == b"still"
                first.end()
                second.end()
                assert (await first.status()).ok and (await second.status()).ok
            finally:
                channel.close()

    run(main)
    assert len(seen.peers) == 2
    assert seen.peers[0] != seen.peers[1]  # another connection (client port)


# --------------------------------------------------------------------------- failures


@pytest.fixture
def server_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.grpc_echo"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield process, port
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait(WAIT)


async def _open_bidi(port: int, settings: ClientSettings) -> tuple[Channel, list[ClientStream]]:
    channel = Channel("127.0.0.1", port, settings)
    streams = [await channel.open(method("Bidi")) for _ in range(3)]
    for stream in streams:
        await stream.send(b"hello")
        assert await stream.read() == b"hello"
    return channel, streams


def test_a_killed_server_fails_every_open_call(
    server_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server_process

    async def main() -> list[Status]:
        channel, streams = await _open_bidi(port, SETTINGS)
        try:
            process.kill()
            return [await stream.status() for stream in streams]
        finally:
            channel.close()

    assert {status.code for status in run(main)} == {"UNAVAILABLE"}


def test_a_paused_server_is_found_by_keepalive(
    server_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server_process
    settings = ClientSettings(MAX_MESSAGE, keepalive_time=0.5, keepalive_timeout=0.5)

    async def main() -> tuple[list[Status], RpcError]:
        channel, streams = await _open_bidi(port, settings)
        try:
            process.send_signal(signal.SIGSTOP)
            statuses = [await stream.status() for stream in streams]
            # The next call dials again, and the paused server cannot complete a call.
            with pytest.raises(RpcError) as again:
                await unary(channel, "Unary", b"x", timeout=1.0)
            return statuses, again.value
        finally:
            channel.close()

    statuses, again = run(main)
    assert [(s.code, s.message) for s in statuses] == [
        ("UNAVAILABLE", "keepalive watchdog timeout")
    ] * 3
    assert again.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts and then never reads nor writes a byte."""

    async def start() -> asyncio.Server:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.Event().wait()

        return await asyncio.start_server(hold, "127.0.0.1", 0)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(start())
    try:
        import threading

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        server.close()
        loop.close()


def test_a_silent_peer_fails_the_connection_after_keepalive(silent_port: int) -> None:
    settings = ClientSettings(MAX_MESSAGE, keepalive_time=0.3, keepalive_timeout=0.3)

    async def main() -> Status:
        channel = Channel("127.0.0.1", silent_port, settings)
        try:
            stream = await channel.open(method("Bidi"))
            stream.write(b"anyone?")
            return await stream.status()
        finally:
            channel.close()

    assert run(main) == Status("UNAVAILABLE", "keepalive watchdog timeout")


def test_a_tls_handshake_that_never_ends_fails_after_the_connect_timeout(
    silent_port: int, identities: Identities
) -> None:
    settings = ClientSettings(MAX_MESSAGE, connect_timeout=0.5)

    async def main() -> RpcError:
        context = client_ssl_context(identities.checkout)
        channel = Channel("127.0.0.1", silent_port, settings, context, ORDERS.peer_name())
        try:
            with pytest.raises(RpcError) as failure:
                await channel.open(method("Unary"))
            return failure.value
        finally:
            channel.close()

    failure = run(main)
    assert failure.code == "UNAVAILABLE"
    assert "timed out" in failure.message


# --------------------------------------------------------------------------- mTLS


async def _mtls_call(identities: Identities, expected: SpiffeId, seen: Seen) -> bytes:
    credentials = grpc.ssl_server_credentials(
        [(identities.orders.private_key_pem, identities.orders.certificate_chain_pem)],
        root_certificates=identities.orders.trust_bundle_pem,
        require_client_auth=True,
    )
    async with serve(seen, credentials) as port:
        context = client_ssl_context(identities.checkout)
        channel = Channel("127.0.0.1", port, SETTINGS, context, expected.peer_name())
        try:
            return await unary(channel, "Unary", b"ping", timeout=WAIT)
        finally:
            channel.close()


def test_mtls_pins_the_server_and_presents_our_certificate(identities: Identities) -> None:
    seen = Seen()

    async def main() -> bytes:
        return await _mtls_call(identities, ORDERS, seen)

    assert run(main) == b"gnip"
    # grpcio's server read the client certificate's one SPIFFE URI SAN.
    assert seen.auth[0]["peer_spiffe_id"] == [str(CHECKOUT).encode()]


@pytest.mark.parametrize("expected", [PAYMENTS, SpiffeId("public", "other", "orders")])
def test_mtls_refuses_a_server_with_another_identity(
    identities: Identities, expected: SpiffeId
) -> None:
    seen = Seen()

    async def main() -> RpcError:
        with pytest.raises(RpcError) as failure:
            await _mtls_call(identities, expected, seen)
        return failure.value

    failure = run(main)
    assert failure.code == "UNAVAILABLE"
    assert "certificate" in failure.message.lower() or "hostname" in failure.message.lower()
    assert seen.auth == []
