"""How an attempt counts for the resiliency policies, and which ``InvokeError``
a failed call becomes. Pure: answers and exceptions in, outcomes and errors out."""

from __future__ import annotations

from proxy.core.errors import CallRejected, InvocationFailed
from proxy.discovery.resolver import AppNotFoundError, ResolveError
from proxy.hop.call import Answer, Headers, InvokeDenied, InvokeError, InvokeRejected
from proxy.hop.header_rules import first_value
from resiliency import (
    SUCCESS,
    TRANSPORT_FAILURE,
    AttemptTimedOut,
    BreakerRejected,
    DeadlineExceeded,
    Outcome,
)

# Connection-level failures after which the endpoint and channel are dropped.
CONNECTION_CODES = frozenset({"UNAVAILABLE", "UNAUTHENTICATED"})

PERMANENT_FAILURE = Outcome(False, permanent=True)
# Only for a request that provably never reached the callee app: Dapr's built-in
# retries resend these alone (at most once per execution).
CONNECTION_FAILURE = Outcome(False, connection_failure=True)


def succeeded(status: int) -> bool:
    # Dapr's HTTP invoke treats anything below 200 or above 399 as a failed call.
    return 200 <= status <= 399


def classify(answer: Answer) -> Outcome:
    """How an attempt the app answered counts on the HTTP API. A gRPC app's answer is
    the call's answer whatever its status: daprd's HTTP API maps a status other than OK
    to an HTTP status and body and hands it back, neither retried nor counted against a
    circuit breaker; only an HTTP app's status below 200 or above 399 is a failure."""
    if answer.grpc is not None:
        return SUCCESS
    return classify_status(answer)


def classify_status(answer: Answer) -> Outcome:
    """How an attempt the app answered counts by its HTTP status alone, as on Dapr's
    gRPC API (InvokeService), where a gRPC app's status other than OK fails too."""
    if succeeded(answer.status):
        return SUCCESS
    retry_after = None
    if answer.status in (429, 503):
        retry_after = _retry_after(answer.headers)
    return Outcome(False, code=answer.status, retry_after=retry_after)


def _retry_after(headers: Headers) -> float | None:
    value = first_value(headers, b"retry-after")
    text = value.strip() if value is not None else b""
    return float(text) if text.isdigit() else None  # HTTP-dates are not honoured


def classify_error(exc: Exception) -> Outcome | None:
    """How an attempt that raised counts: a policy's retries resend every non-code
    error (Dapr's semantics); the built-in ones only what never reached the app."""
    if isinstance(exc, InvocationFailed):
        if exc.grpc_code in ("PERMISSION_DENIED", "CANCELLED", "INVALID_ARGUMENT"):
            return PERMANENT_FAILURE  # an ACL refusal, or the caller's own body broke
        if exc.grpc_code in CONNECTION_CODES and not exc.maybe_delivered:
            return CONNECTION_FAILURE
        return TRANSPORT_FAILURE
    if isinstance(exc, CallRejected):
        return PERMANENT_FAILURE if exc.code == "INVALID_ARGUMENT" else TRANSPORT_FAILURE
    if isinstance(exc, AppNotFoundError):
        return PERMANENT_FAILURE  # the app does not exist: retrying cannot help
    if isinstance(exc, ResolveError):
        return TRANSPORT_FAILURE
    return None


# What a call can end in besides an answer; each becomes an InvokeError.
CallFailure = (
    AttemptTimedOut
    | DeadlineExceeded
    | BreakerRejected
    | InvocationFailed
    | CallRejected
    | ResolveError
)
CALL_FAILURES = (
    AttemptTimedOut,
    DeadlineExceeded,
    BreakerRejected,
    InvocationFailed,
    CallRejected,
    ResolveError,
)


def invoke_error(target_id: str, exc: CallFailure) -> InvokeError:
    """The error the caller sees for a call that ended in ``exc``."""
    if isinstance(exc, (AttemptTimedOut, DeadlineExceeded)):
        return InvokeError(target_id, "context deadline exceeded")
    if isinstance(exc, InvocationFailed):
        # Dapr shows the peer's gRPC status the way grpc-go prints it.
        reason = f"rpc error: code = {exc.grpc_code.title().replace('_', '')} desc = {exc}"
        if exc.grpc_code == "PERMISSION_DENIED":
            return InvokeDenied(target_id, reason)
        return InvokeError(target_id, reason)
    if isinstance(exc, CallRejected):
        # For a broken request body the edge answers 400/413 in place of this.
        if exc.code == "INVALID_ARGUMENT":
            return InvokeRejected(target_id, str(exc))
        return InvokeError(target_id, str(exc))
    return InvokeError(target_id, str(exc))  # an open breaker, an unknown app
