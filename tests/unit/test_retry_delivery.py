"""At most once under the built-in retries: a failure is resent by Dapr's built-in
service retries only when the request provably never reached the callee app; one
that may have been delivered gets Dapr's error. A user's retry policy still resends
every failure (Dapr's semantics)."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from proxy.core.errors import InvocationFailed
from proxy.grpcwire.client import RpcError, Status
from proxy.grpcwire.client_status import status_from_reset
from proxy.hop.grpcio_calls import never_connected
from proxy.hop.mux_client import MuxConnection
from proxy.hop.outcomes import CONNECTION_FAILURE, classify_error
from proxy.protos import internals_pb2, mux_pb2
from resiliency import SUCCESS, TRANSPORT_FAILURE, Outcome
from resiliency.engine import ResiliencyEngine
from resiliency.loader import load_texts

from .resiliency.fakes import FakeClock
from .test_mux_deadline import _Channel, _request, _Stream

UNDELIVERED = InvocationFailed("refused", "UNAVAILABLE", maybe_delivered=False)
MAYBE_DELIVERED = InvocationFailed("connection lost", "UNAVAILABLE")


@pytest.mark.parametrize("code", ["UNAVAILABLE", "UNAUTHENTICATED"])
def test_only_a_provably_undelivered_connection_failure_is_a_connection_failure(
    code: str,
) -> None:
    assert classify_error(InvocationFailed("x", code, maybe_delivered=False)) == CONNECTION_FAILURE
    # The default is the safe one: a failure not marked otherwise may have been delivered.
    assert classify_error(InvocationFailed("x", code)) == TRANSPORT_FAILURE


def test_other_codes_stay_what_they_were_whatever_the_mark() -> None:
    assert classify_error(InvocationFailed("x", "INTERNAL", maybe_delivered=False)) == (
        TRANSPORT_FAILURE
    )
    assert classify_error(InvocationFailed("x", "PERMISSION_DENIED")).permanent


# grpcio's details, as grpcio 1.85 words them (captured from real calls).
REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:43155: "
    "Failed to connect to remote host: Connection refused"
)
TLS = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL"
)


@pytest.mark.parametrize(
    ("code", "details", "undelivered"),
    [
        ("UNAVAILABLE", REFUSED, True),
        ("UNAVAILABLE", TLS, True),
        ("UNAVAILABLE", "DNS resolution failed for nowhere:1", True),
        ("UNAUTHENTICATED", "certificate refused", True),
        # A peer killed while the call was pending, and a call on its dying connection.
        ("UNAVAILABLE", "Stream removed (Socket closed)", False),
        ("UNAVAILABLE", "Stream removed (Delayed close due to in-progress write)", False),
        ("UNAVAILABLE", "recvmsg:Connection reset by peer", False),
        ("UNAVAILABLE", "GOAWAY received", False),
        ("INTERNAL", REFUSED, False),
    ],
)
def test_grpcio_failures_count_as_undelivered_only_without_a_connection(
    code: str, details: str, undelivered: bool
) -> None:
    assert never_connected(code, details) is undelivered


def test_a_refused_stream_is_marked_refused_and_a_cancel_is_not() -> None:
    assert status_from_reset(0x7) == Status("UNAVAILABLE", status_from_reset(0x7).message, True)
    assert not status_from_reset(0x8).refused
    assert not status_from_reset(0x2).refused
    assert RpcError.of(status_from_reset(0x7)).refused


def _mux_failure(
    stream: _Stream, end: Status | None = None, reply: mux_pb2.MuxFrame | None = None
) -> InvocationFailed:
    """The failure of one multiplexed call after the stream ends with ``end`` (or the
    callee replies ``reply``)."""

    async def main() -> InvocationFailed:
        connection = MuxConnection(_Channel(stream))
        call = asyncio.ensure_future(connection.invoke(_request(), b"{}", timeout=30))
        for _ in range(5):
            await asyncio.sleep(0)
        if end is not None:
            assert stream.listener is not None
            stream.listener.closed(end)
        if reply is not None:
            stream.reply(reply)
        try:
            with pytest.raises(InvocationFailed) as failure:
                await call
        finally:
            await connection.close()
        return failure.value

    return asyncio.run(main())


def test_a_stream_broken_after_the_frame_went_out_may_have_delivered_it() -> None:
    stream = _Stream()
    failure = _mux_failure(stream, Status("UNAVAILABLE", "connection lost"))
    assert len(stream.written) == 1
    assert failure.grpc_code == "UNAVAILABLE" and failure.maybe_delivered
    assert classify_error(failure) == TRANSPORT_FAILURE


def test_a_stream_that_ends_before_it_was_accepted_delivered_nothing() -> None:
    stream = _Stream(opens=False)
    failure = _mux_failure(stream, Status("UNAVAILABLE", "received GOAWAY", refused=True))
    assert stream.written == []
    assert not failure.maybe_delivered
    assert classify_error(failure) == CONNECTION_FAILURE


def test_a_stream_that_cannot_be_opened_delivered_nothing() -> None:
    class Refusing(_Channel):
        async def open(self, *args: object, **kwargs: object) -> _Stream:
            raise RpcError("UNAVAILABLE", "failed to connect: Connection refused", refused=True)

    async def main() -> InvocationFailed:
        connection = MuxConnection(Refusing(_Stream()))
        try:
            with pytest.raises(InvocationFailed) as failure:
                await connection.invoke(_request(), b"{}", timeout=30)
            # And a call on the connection known to be broken is refused at once.
            with pytest.raises(InvocationFailed) as again:
                await connection.invoke(_request(), b"{}", timeout=30)
        finally:
            await connection.close()
        assert not again.value.maybe_delivered
        return failure.value

    assert classify_error(asyncio.run(main())) == CONNECTION_FAILURE


def _error_frame(code: int) -> mux_pb2.MuxFrame:
    return mux_pb2.MuxFrame(call_id=1, error=internals_pb2.Status(code=code, message="m"))


@pytest.mark.parametrize(("code", "undelivered"), [(14, True), (16, True), (13, False)])
def test_the_callees_not_started_answer_is_undelivered(code: int, undelivered: bool) -> None:
    failure = _mux_failure(_Stream(), reply=_error_frame(code))
    assert failure.maybe_delivered is not undelivered


HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\nspec:\n"


def _attempts(failure: InvocationFailed, policies: str = "") -> tuple[int, list[float]]:
    """How many times an operation failing once with ``failure`` is sent, and the sleeps."""
    text = HEADER + "  policies:\n" + (policies or "    timeouts: {t: 5s}\n")
    config, report = load_texts([("f", text)])
    assert report.ok, report.lines()
    clock = FakeClock()
    engine = ResiliencyEngine(config, clock=clock, sleep=clock.sleep, rng=random.Random(3))
    sent: list[int] = []

    async def operation(attempt: int) -> int:
        sent.append(attempt)
        if len(sent) == 1:
            raise failure
        return 200

    def classify(status: int) -> Outcome:
        return SUCCESS

    runner = engine.runner_for("orders", "m")
    with contextlib.suppress(InvocationFailed):
        asyncio.run(runner.run(operation, classify, errors=classify_error))
    return len(sent), clock.sleeps


def test_builtin_retries_resend_only_an_undelivered_request() -> None:
    assert _attempts(UNDELIVERED) == (2, [1.0])
    assert _attempts(MAYBE_DELIVERED) == (1, [])


def test_a_users_retry_policy_resends_every_failure_as_dapr_does() -> None:
    policy = "    retries: {DefaultRetryPolicy: {policy: constant, duration: 2s, maxRetries: 2}}\n"
    assert _attempts(MAYBE_DELIVERED, policy) == (2, [2.0])
