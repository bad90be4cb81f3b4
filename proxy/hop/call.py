"""What the invoker takes and gives back, in no protocol's terms: the edge (HTTP
today, Dapr's gRPC API later) builds an ``Invocation``, gets an ``Answer`` or an
``InvokeError``, and alone decides how either looks on its wire."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.core.body import Body
from proxy.core.errors import TetherError

Headers = list[tuple[bytes, bytes]]

# An Invocation's verb when the caller gave none (the gRPC API without an HTTP
# extension): the request then carries no HTTP extension, which only gRPC apps take.
NO_VERB = ""


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
    # Came through Dapr's gRPC API (InvokeService), where a gRPC app's status other
    # than OK is a failed attempt; the HTTP API hands it back as the answer.
    grpc_api: bool = False


@dataclass(frozen=True, slots=True)
class GrpcReply:
    """A gRPC app's answer as its sidecar sent it, for callers that pass it through
    (the Dapr gRPC API's InvokeService): the app's status, its header and trailer
    metadata (Dapr's carried form: ``-bin`` values base64), and the InvokeResponse's
    content type and data type URL."""

    code: int
    message: str
    details: bytes  # the serialised google.rpc.Status with the app's details; b"": none
    headers: Mapping[str, Sequence[str]]
    trailers: Mapping[str, Sequence[str]]
    content_type: str = ""
    type_url: str = ""


@dataclass(slots=True)
class Answer:
    """The target app's answer (or one attempt's), with an HTTP status. A gRPC app's
    answer has the HTTP status, headers and body daprd's HTTP API gives it, and the
    app's own in ``grpc``."""

    status: int
    headers: Headers
    body: Body
    grpc: GrpcReply | None = None


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


class InvokeMalformed(InvokeError):
    """A gRPC app's error status could not be shown as JSON (ERR_MALFORMED_RESPONSE)."""


class InvokeRejected(InvokeError):
    """Our own callee refused the request as malformed (gRPC INVALID_ARGUMENT)."""

    http_status = 400
