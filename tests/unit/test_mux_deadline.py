"""A multiplexed call's own bound (one loop timer per call): it ends a call that is
waiting for its answer, for the stream to open, or inside a write, always as
DEADLINE_EXCEEDED, and never swallows a cancellation that came from elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from proxy.core.errors import InvocationFailed
from proxy.grpcwire.client import StreamListener
from proxy.hop.mux_client import MuxConnection
from proxy.protos import internals_pb2, mux_pb2


class _Stream:
    """A Connect stream that opens (or not), takes writes (or blocks in them) and
    never answers unless told to."""

    def __init__(self, *, opens: bool = True, write_blocks: bool = False) -> None:
        self.opens = opens
        self.write_blocks = write_blocks
        self.written: list[mux_pb2.MuxFrame] = []
        self.listener: StreamListener | None = None

    def write(self, payload: bytes) -> bool:
        self.written.append(mux_pb2.MuxFrame.FromString(payload))
        return not self.write_blocks

    async def drain(self) -> None:
        await asyncio.Event().wait()  # held by flow control for ever

    def reply(self, frame: mux_pb2.MuxFrame) -> None:
        assert self.listener is not None
        self.listener.message(frame.SerializeToString())

    def cancel(self, message: str = "Cancelled") -> None:
        pass


class _Channel:
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    async def open(
        self,
        path: str,
        metadata: tuple[tuple[bytes, bytes], ...] = (),
        timeout: float | None = None,
        listener: StreamListener | None = None,
    ) -> _Stream:
        assert path == "/tether.internal.v1.Multiplex/Connect"
        self.stream.listener = listener
        if self.stream.opens and listener is not None:
            asyncio.get_running_loop().call_soon(listener.headers)
        return self.stream


def _request() -> internals_pb2.InternalInvokeRequest:
    request = internals_pb2.InternalInvokeRequest(ver=internals_pb2.V1)
    request.message.method = "orders"
    return request


def _deadline_failure(stream: _Stream) -> tuple[InvocationFailed, int]:
    async def main() -> tuple[InvocationFailed, int]:
        connection = MuxConnection(_Channel(stream))
        task = asyncio.current_task()
        assert task is not None
        try:
            with pytest.raises(InvocationFailed) as failure:
                await connection.invoke(_request(), b"{}", timeout=0.05)
        finally:
            await connection.close()
        # The deadline's own cancellation is undone: nothing is left pending on the task.
        return failure.value, task.cancelling()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "stream",
    [_Stream(), _Stream(opens=False), _Stream(write_blocks=True)],
    ids=["waiting-for-the-answer", "stream-not-open", "inside-the-write"],
)
def test_the_bound_ends_the_call_as_deadline_exceeded(stream: _Stream) -> None:
    failure, cancelling = _deadline_failure(stream)
    assert failure.grpc_code == "DEADLINE_EXCEEDED"
    assert str(failure) == "context deadline exceeded"
    assert cancelling == 0


def test_an_answer_in_time_is_returned_and_the_timer_is_gone() -> None:
    async def main() -> tuple[int, str, bytes]:
        stream = _Stream()
        connection = MuxConnection(_Channel(stream))
        pending = asyncio.ensure_future(connection.invoke(_request(), b"{}", timeout=0.05))
        while not stream.written:
            await asyncio.sleep(0)
        reply = mux_pb2.MuxFrame(call_id=stream.written[0].call_id)
        reply.response.status.code = 200
        reply.response.message.data.value = b"ok"
        stream.reply(reply)
        response, body = await pending
        await asyncio.sleep(0.1)  # past the bound: nothing fires for a finished call
        await connection.close()
        return response.status.code, stream.written[0].request.message.method, body.head

    assert asyncio.run(main()) == (200, "orders", b"ok")


@pytest.mark.parametrize("write_blocks", [False, True], ids=["answer", "write"])
def test_a_cancellation_from_elsewhere_stays_a_cancellation(write_blocks: bool) -> None:
    async def main() -> bool:
        stream = _Stream(write_blocks=write_blocks)
        connection = MuxConnection(_Channel(stream))
        pending = asyncio.ensure_future(connection.invoke(_request(), b"{}", timeout=5.0))
        while not stream.written:
            await asyncio.sleep(0)
        pending.cancel()
        try:
            await pending
        except asyncio.CancelledError:
            return True
        finally:
            await connection.close()
        return False

    assert asyncio.run(main())


def test_an_outer_cancellation_at_the_deadline_is_not_swallowed() -> None:
    class _CancelledAlsoFromOutside(_Stream):
        def write(self, payload: bytes) -> bool:
            self.written.append(mux_pb2.MuxFrame.FromString(payload))
            return False

        async def drain(self) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                # Someone else cancels the task in the same turn as the deadline fired.
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                raise

    async def main() -> str:
        connection = MuxConnection(_Channel(_CancelledAlsoFromOutside()))
        pending = asyncio.ensure_future(connection.invoke(_request(), b"{}", timeout=0.05))
        try:
            await pending
        except asyncio.CancelledError:
            return "cancelled"
        except InvocationFailed as exc:
            return exc.grpc_code
        finally:
            await connection.close()
        return "answered"

    assert asyncio.run(main()) == "cancelled"
