"""What the invoker takes and gives back, in no protocol's terms: the edge (HTTP
today, Dapr's gRPC API later) builds an ``Invocation``, gets an ``Answer`` or an
``InvokeError``, and alone decides how either looks on its wire."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.body import Body
from proxy.core.errors import TetherError

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Invocation:
    """A call for another app (or our own), as the caller made it."""

    target_id: str  # ``app`` or ``app.namespace``, as the caller wrote it
    method: str  # normalised once, at the edge
    verb: str
    path: str  # the path as received, for the caller span
    query: str
    headers: Headers  # lower-case names
    body: Body
    # The request header that named the target (dapr-app-id, authorization): not forwarded.
    id_header: bytes = b""


@dataclass(slots=True)
class Answer:
    """The target app's answer (or one attempt's), with an HTTP status."""

    status: int
    headers: Headers
    body: Body


class InvokeError(TetherError):
    """The call failed before the target app answered (Dapr: ERR_DIRECT_INVOKE, 500)."""

    # The HTTP status Dapr answers with for this kind of failure.
    http_status = 500

    def __init__(self, target_id: str, reason: str) -> None:
        super().__init__(reason)
        self.target_id = target_id
        self.reason = reason
        # W3C traceparent of the caller span; Dapr returns it to the caller with the error.
        self.traceparent: str | None = None


class InvokeDenied(InvokeError):
    """The target's sidecar refused the caller (gRPC PERMISSION_DENIED)."""

    http_status = 403


class InvokeRejected(InvokeError):
    """Our own callee refused the request as malformed (gRPC INVALID_ARGUMENT)."""

    http_status = 400
