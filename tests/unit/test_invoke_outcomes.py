"""How attempts count for the resiliency policies, and which error the caller
sees for each way a call can fail (Dapr's wording, written out here)."""

from __future__ import annotations

import pytest

from proxy.core.body import Body
from proxy.core.errors import CallRejected, InvocationFailed
from proxy.discovery.resolver import ResolveError
from proxy.hop.call import Answer, GrpcReply, InvokeDenied, InvokeError, InvokeRejected
from proxy.hop.outcomes import (
    CONNECTION_FAILURE,
    PERMANENT_FAILURE,
    CallFailure,
    classify,
    classify_error,
    classify_status,
    invoke_error,
)
from resiliency import (
    SUCCESS,
    TRANSPORT_FAILURE,
    AttemptTimedOut,
    CircuitOpen,
    DeadlineExceeded,
    Outcome,
    TooManyRequests,
)


def answer(status: int, *headers: tuple[bytes, bytes]) -> Answer:
    return Answer(status, list(headers), Body())


@pytest.mark.parametrize("status", [200, 204, 302, 399])
def test_dapr_counts_200_to_399_as_success(status: int) -> None:
    assert classify(answer(status)) == SUCCESS


@pytest.mark.parametrize("status", [101, 400, 404, 500])
def test_other_statuses_fail_with_their_code(status: int) -> None:
    assert classify(answer(status)) == Outcome(False, code=status)


@pytest.mark.parametrize("status", [200, 204, 302, 399])
def test_statuses_alone_count_the_same(status: int) -> None:
    assert classify_status(answer(status)) == SUCCESS


@pytest.mark.parametrize(("code", "status"), [(0, 200), (3, 400), (5, 404), (14, 503)])
def test_a_grpc_apps_answer_is_the_answer_on_the_http_api_and_fails_on_the_grpc_api(
    code: int, status: int
) -> None:
    # daprd's HTTP API maps the app's status to HTTP and hands it back (no retry, no
    # breaker failure); its InvokeService judges the status and retries what failed.
    reply = GrpcReply(code=code, message="m", details=b"", headers={}, trailers={})
    from_grpc_app = Answer(status, [], Body(), reply)
    assert classify(from_grpc_app) == SUCCESS
    expected = SUCCESS if code == 0 else Outcome(False, code=status)
    assert classify_status(from_grpc_app) == expected
    # An HTTP app's same status fails on both.
    if code:
        assert classify(answer(status)) == classify_status(answer(status)) == expected


def test_retry_after_seconds_are_read_on_429_and_503_only() -> None:
    assert classify(answer(429, (b"retry-after", b" 7 "))).retry_after == 7.0
    assert classify(answer(503, (b"retry-after", b"2"))).retry_after == 2.0
    assert classify(answer(500, (b"retry-after", b"2"))).retry_after is None
    http_date = (b"retry-after", b"Wed, 21 Oct 2015 07:28:00 GMT")
    assert classify(answer(503, http_date)).retry_after is None


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (InvocationFailed("denied", "PERMISSION_DENIED"), PERMANENT_FAILURE),
        (InvocationFailed("body broke", "CANCELLED"), PERMANENT_FAILURE),
        (InvocationFailed("bad", "INVALID_ARGUMENT"), PERMANENT_FAILURE),
        (InvocationFailed("refused", "UNAVAILABLE", maybe_delivered=False), CONNECTION_FAILURE),
        (InvocationFailed("who?", "UNAUTHENTICATED", maybe_delivered=False), CONNECTION_FAILURE),
        (InvocationFailed("connection lost", "UNAVAILABLE"), TRANSPORT_FAILURE),
        (InvocationFailed("boom", "INTERNAL"), TRANSPORT_FAILURE),
        (CallRejected("INVALID_ARGUMENT", "bad method"), PERMANENT_FAILURE),
        (CallRejected("INTERNAL", "app down"), TRANSPORT_FAILURE),
        (ResolveError("app id x not found"), TRANSPORT_FAILURE),
    ],
)
def test_failed_attempts_count_as_dapr_counts_them(exc: Exception, outcome: Outcome) -> None:
    assert classify_error(exc) == outcome


def test_other_exceptions_are_not_classified() -> None:
    assert classify_error(ValueError("a bug")) is None


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (AttemptTimedOut(0.2), InvokeError, "context deadline exceeded"),
        (DeadlineExceeded(5.0), InvokeError, "context deadline exceeded"),
        (CircuitOpen(), InvokeError, "circuit breaker is open"),
        (TooManyRequests(), InvokeError, "too many requests"),
        (ResolveError("app id x not found"), InvokeError, "app id x not found"),
        (
            InvocationFailed("access denied", "PERMISSION_DENIED"),
            InvokeDenied,
            "rpc error: code = PermissionDenied desc = access denied",
        ),
        (
            InvocationFailed("connection refused", "UNAVAILABLE"),
            InvokeError,
            "rpc error: code = Unavailable desc = connection refused",
        ),
        (
            InvocationFailed("bad header", "INVALID_ARGUMENT"),
            InvokeError,
            "rpc error: code = InvalidArgument desc = bad header",
        ),
        (CallRejected("INVALID_ARGUMENT", "bad method"), InvokeRejected, "bad method"),
        (CallRejected("INTERNAL", "app is not in a healthy state"), InvokeError, None),
    ],
)
def test_each_failure_becomes_the_error_dapr_shows(
    exc: CallFailure, kind: type[InvokeError], reason: str | None
) -> None:
    error = invoke_error("orders", exc)
    assert type(error) is kind
    assert error.target_id == "orders"
    assert error.reason == (reason if reason is not None else str(exc))
    assert error.traceparent is None


def test_http_status_per_kind() -> None:
    assert (InvokeError.http_status, InvokeDenied.http_status, InvokeRejected.http_status) == (
        500,
        403,
        400,
    )
