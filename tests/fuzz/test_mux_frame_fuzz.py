"""tether's multiplexed stream under arbitrary frames: random bytes as messages on
``Connect`` (decodable as a MuxFrame or not, any call ids, repeated ids), sent to a real
lean gRPC server hosting the MuxService. Every frame that decodes is answered once with
its call id (an error frame here: the app is unreachable), an undecodable one ends the
call with a gRPC status, nothing raises inside the server, and it keeps serving."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.app.channel import HttpAppChannel
from proxy.grpcwire.server import GrpcServer
from proxy.hop.callee import Callee
from proxy.hop.mux_server import MuxService, ParkedBodies
from proxy.hop.rpc_methods import MUX_CONNECT
from proxy.protos import common_pb2, internals_pb2, mux_pb2
from tests.fuzz.served import Running as Server
from tests.fuzz.served import served

NOWHERE = 9  # the discard port: nothing listens there on loopback


async def _start() -> tuple[int, Callable[[], Awaitable[None]]]:
    callee = Callee(HttpAppChannel("127.0.0.1", NOWHERE), None, app_id="orders")
    mux = MuxService(callee, ParkedBodies())
    server = GrpcServer(mux.methods(), max_message_size=1 << 20)
    port = await server.listen("127.0.0.1", 0)
    return port, lambda: server.stop(0)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with served(_start) as running:
        yield running


def valid_frame(call_id: int) -> bytes:
    request = internals_pb2.InternalInvokeRequest(
        ver=internals_pb2.V1,
        message=common_pb2.InvokeRequest(
            method="m",
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
        ),
    )
    return mux_pb2.MuxFrame(call_id=call_id, request=request).SerializeToString()


def exchange(port: int, messages: list[bytes]) -> tuple[list[bytes], grpc.StatusCode]:
    """Send raw messages on one Connect call; every answer and the call's final status."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        connect = channel.stream_stream(
            MUX_CONNECT, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw
        )
        call = connect(iter(messages), timeout=20)
        answers: list[bytes] = []
        with contextlib.suppress(grpc.RpcError):  # the status is read below
            answers.extend(call)
        return answers, call.code()


def decodes(raw: bytes) -> mux_pb2.MuxFrame | None:
    try:
        return mux_pb2.MuxFrame.FromString(raw)
    except DecodeError:
        return None


FRAMES = st.one_of(
    st.binary(max_size=80),
    st.integers(0, 2**64 - 1).map(valid_frame),
    st.builds(
        lambda frame, cut: frame[:cut], st.integers(1, 50).map(valid_frame), st.integers(0, 40)
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAMES, min_size=1, max_size=6))
def test_any_frames_are_answered_or_end_the_call(server: Server, frames: list[bytes]) -> None:
    answers, code = exchange(server.port, frames)
    decoded = [decodes(raw) for raw in frames]
    if all(frame is not None for frame in decoded):
        # Every frame gets exactly one answer, with its own call id.
        ids = sorted(mux_pb2.MuxFrame.FromString(raw).call_id for raw in answers)
        assert ids == sorted(frame.call_id for frame in decoded if frame is not None)
        assert code is grpc.StatusCode.OK
    else:
        assert code is not grpc.StatusCode.OK  # the undecodable message ends the call
    assert server.errors == []


def test_the_server_still_answers_after_the_fuzzing(server: Server) -> None:
    answers, code = exchange(server.port, [valid_frame(7)])
    assert code is grpc.StatusCode.OK
    reply = mux_pb2.MuxFrame.FromString(answers[0])
    assert reply.call_id == 7 and reply.HasField("error")
