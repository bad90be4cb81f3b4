"""Limits on what a calling sidecar can make a callee do, with a real callee sidecar
and app spoken to as a caller would (grpcio stubs on the internal port):

- a peer that writes frames without waiting gets at most --max-calls-per-connection
  of them in progress at once; the rest wait (backpressure) and are all answered;
- a peer (one certificate identity) gets at most --max-calls-per-peer over all its
  connections together;
- a body streamed in by a peer is held to the callee's --max-body-size, declared or not.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from google.protobuf import any_pb2

from certs.identity import WorkloadIdentity
from certs.spiffe import SpiffeId
from proxy.grpcwire.client import Channel, ClientSettings
from proxy.hop.rpc_methods import CALL_LOCAL_STREAM
from proxy.protos import (
    common_pb2,
    internals_pb2,
    mux_pb2,
    mux_pb2_grpc,
)
from tests.crafted_certs import crafted_from_dir
from tests.e2e.harness import App, Cluster, Sidecar, free_port
from tests.e2e.test_peer_identity import registration_of

WAIT = 60.0


def invoke_request(method: str, length: int | None = None) -> internals_pb2.InternalInvokeRequest:
    metadata = {}
    if length is not None:
        metadata["content-length"] = internals_pb2.ListStringValue(values=[str(length)])
    return internals_pb2.InternalInvokeRequest(
        ver=internals_pb2.V1,
        metadata=metadata,
        message=common_pb2.InvokeRequest(
            method=method,
            data=any_pb2.Any(value=b""),
            content_type="application/octet-stream",
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
        ),
    )


def start(cluster: Cluster, *flags: str) -> tuple[App, Sidecar, int]:
    app = cluster.app("orders")
    port = free_port()
    sidecar = cluster.sidecar(
        "orders", app, mtls=False, extra=("--dapr-internal-grpc-port", str(port), *flags)
    )
    return app, sidecar, port


async def _burst(channel: grpc.aio.Channel, first_id: int, count: int) -> list[mux_pb2.MuxFrame]:
    """``count`` frames written at once on one Connect stream (no answer awaited
    between them); every answer."""
    call = mux_pb2_grpc.MultiplexStub(channel).Connect()
    for call_id in range(first_id, first_id + count):
        request = invoke_request("concurrent/150")
        await call.write(mux_pb2.MuxFrame(call_id=call_id, request=request))
    answers = []
    async with asyncio.timeout(WAIT):
        while len(answers) < count:
            frame = await call.read()
            assert frame is not grpc.aio.EOF
            answers.append(frame)
    await call.done_writing()
    return answers


def test_frames_beyond_the_per_connection_limit_wait_and_are_all_answered(
    cluster: Cluster,
) -> None:
    _, _, port = start(cluster, "--max-calls-per-connection", "4")
    count = 40

    async def main() -> list[mux_pb2.MuxFrame]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await _burst(channel, 1, count)

    answers = asyncio.run(main())
    assert sorted(frame.call_id for frame in answers) == list(range(1, count + 1))
    peaks = [json.loads(frame.response.message.data.value)["peak"] for frame in answers]
    # The app counted how many of these it had in hand at once.
    assert max(peaks) <= 4


def test_one_peer_over_two_connections_gets_at_most_the_per_peer_limit(
    cluster: Cluster,
) -> None:
    certs = cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar(
        "orders",
        app,
        extra=("--max-calls-per-peer", "3", "--max-calls-per-connection", "100"),
    )
    _, address = registration_of(cluster, "orders", "default")
    checkout = SpiffeId("public", "default", "checkout")
    client: WorkloadIdentity = crafted_from_dir(certs, [str(checkout)], [checkout.peer_name()])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=client.trust_bundle_pem,
        private_key=client.private_key_pem,
        certificate_chain=client.certificate_chain_pem,
    )
    options = [
        ("grpc.ssl_target_name_override", SpiffeId("public", "default", "orders").peer_name()),
        ("grpc.use_local_subchannel_pool", 1),  # each channel its own connection
    ]

    async def main() -> list[mux_pb2.MuxFrame]:
        async with (
            grpc.aio.secure_channel(address, credentials, options=options) as one,
            grpc.aio.secure_channel(address, credentials, options=options) as two,
        ):
            both = await asyncio.gather(_burst(one, 1, 12), _burst(two, 101, 12))
        return [*both[0], *both[1]]

    answers = asyncio.run(main())
    ids = sorted(frame.call_id for frame in answers)
    assert ids == [*range(1, 13), *range(101, 113)]
    assert not [frame for frame in answers if frame.HasField("error")]
    peaks = [json.loads(frame.response.message.data.value)["peak"] for frame in answers]
    # Both connections are one peer: the app never had more than 3 of its calls at once.
    assert max(peaks) <= 3


async def stream_body(
    port: int, chunks: list[bytes], declared: int | None
) -> tuple[grpc.StatusCode, str]:
    """CallLocalStream with the body in ``chunks``, through the lean client: grpcio's
    own turns a write racing the callee's early answer into "Internal error from Core"."""
    messages = [
        internals_pb2.InternalInvokeRequestStream(
            request=invoke_request("upload", declared),
            payload=common_pb2.StreamPayload(data=chunks[0], seq=0),
        )
    ]
    for seq, chunk in enumerate(chunks[1:], start=1):
        messages.append(
            internals_pb2.InternalInvokeRequestStream(
                payload=common_pb2.StreamPayload(data=chunk, seq=seq)
            )
        )
    channel = Channel("127.0.0.1", port, ClientSettings(4 << 20))
    try:
        async with asyncio.timeout(WAIT):
            stream = await channel.open(CALL_LOCAL_STREAM)
            for message in messages:
                stream.write(message.SerializeToString())
            stream.end()
            while await stream.read() is not None:
                pass
            status = await stream.status()
    finally:
        channel.close()
    return getattr(grpc.StatusCode, status.code), status.message


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_streamed_body_over_the_callee_limit_is_refused(cluster: Cluster, declared: bool) -> None:
    app, _, port = start(cluster, "--max-body-size", "2Ki")
    if declared:
        # Refused on the declared length alone.
        code, details = asyncio.run(stream_body(port, [b"a" * 1000], 5000))
    else:
        code, details = asyncio.run(stream_body(port, [b"a" * 1000] * 5, None))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert "body exceeds the limit of 2048 bytes" in details
    if declared:  # refused before the app was called
        assert [e for e in app.received() if e["path"] == "/upload"] == []
    else:  # the app saw at most a broken request, never a whole one over the limit
        assert all(e["body_length"] <= 2048 for e in app.received() if e["path"] == "/upload")


def test_a_streamed_body_within_the_limit_still_arrives(cluster: Cluster) -> None:
    app, _, port = start(cluster, "--max-body-size", "8Ki")
    code, details = asyncio.run(stream_body(port, [b"a" * 1000] * 5, None))
    assert code is grpc.StatusCode.OK, details
    assert [e["body_length"] for e in app.received() if e["path"] == "/upload"] == [5000]
