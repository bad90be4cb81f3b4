"""A multiplexed call's own bound (one loop timer per call): it ends a call that is
waiting for its answer, for the stream to open, or inside a write, always as
DEADLINE_EXCEEDED, and never swallows a cancellation that came from elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from proxy.core.errors import InvocationFailed
from proxy.hop.mux_client import MuxConnection
from proxy.protos import internals_pb2, mux_pb2


class _Stream:
    """A Connect stream that opens (or not), takes writes (or blocks in them) and
    never answers unless told to."""

    def __init__(self, *, opens: bool = True, write_blocks: bool = False) -> None:
        self.opens = opens
        self.write_blocks = write_blocks
        self.written: list[mux_pb2.MuxFrame] = []
        self.replies: asyncio.Queue[mux_pb2.MuxFrame] = asyncio.Queue()

    async def initial_metadata(self) -> tuple[()]:
        if not self.opens:
            await asyncio.Event().wait()
        return ()

    async def write(self, frame: mux_pb2.MuxFrame) -> None:
        self.written.append(frame)
        if self.write_blocks:
            await asyncio.Event().wait()

    async def read(self) -> mux_pb2.MuxFrame:
        return await self.replies.get()

    def cancel(self) -> None:
        pass


class _Stub:
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def Connect(self) -> _Stream:  # the generated stub's name
        return self.stream


def _request() -> internals_pb2.InternalInvokeRequest:
    request = internals_pb2.InternalInvokeRequest(ver=internals_pb2.V1)
    request.message.method = "orders"
    return request


def _deadline_failure(stream: _Stream) -> tuple[InvocationFailed, int]:
    async def main() -> tuple[InvocationFailed, int]:
        connection = MuxConnection(_Stub(stream))
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
        connection = MuxConnection(_Stub(stream))
        pending = asyncio.ensure_future(connection.invoke(_request(), b"{}", timeout=0.05))
        while not stream.written:
            await asyncio.sleep(0)
        reply = mux_pb2.MuxFrame(call_id=stream.written[0].call_id)
        reply.response.status.code = 200
        reply.response.message.data.value = b"ok"
        await stream.replies.put(reply)
        response, body = await pending
        await asyncio.sleep(0.1)  # past the bound: nothing fires for a finished call
        await connection.close()
        return response.status.code, stream.written[0].request.message.method, body.head

    assert asyncio.run(main()) == (200, "orders", b"ok")


@pytest.mark.parametrize("write_blocks", [False, True], ids=["answer", "write"])
def test_a_cancellation_from_elsewhere_stays_a_cancellation(write_blocks: bool) -> None:
    async def main() -> bool:
        stream = _Stream(write_blocks=write_blocks)
        connection = MuxConnection(_Stub(stream))
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
        async def write(self, frame: mux_pb2.MuxFrame) -> None:
            self.written.append(frame)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                # Someone else cancels the task in the same turn as the deadline fired.
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                raise

    async def main() -> str:
        connection = MuxConnection(_Stub(_CancelledAlsoFromOutside()))
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
