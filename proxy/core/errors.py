"""Exceptions of the proxy package. Each one is translated into a response or a
CLI message in exactly one place: the HTTP edge, the internal server, or the CLI."""

from __future__ import annotations


class TetherError(Exception):
    """Base class for every error the sidecar raises on purpose."""


class UsageError(TetherError):
    """A CLI flag or environment value is invalid or not supported yet."""


class InvalidMethod(TetherError):
    """The method path of an invocation contains a forbidden byte."""


class InvalidAppId(TetherError):
    """The target app ID is malformed (e.g. more than one dot)."""


class InvocationFailed(TetherError):
    """Forwarding a call failed before the target app answered.

    ``grpc_code`` is the gRPC status name the failure maps to (Dapr's mapping
    decides the HTTP status at the edge). ``maybe_delivered`` is False only when
    the request provably never reached the callee app (nothing sent, the connection
    or stream refused, the callee's own "not started" answer): only then may Dapr's
    built-in retries send it again."""

    def __init__(
        self, message: str, grpc_code: str = "INTERNAL", *, maybe_delivered: bool = True
    ) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.maybe_delivered = maybe_delivered


class AppChannelError(TetherError):
    """The local app could not be reached or answered with broken HTTP."""


class StreamProtocolError(TetherError):
    """A peer broke the stream framing (sequence gap, repeated header)."""


class CallRejected(TetherError):
    """The callee refused or failed a call before the app answered; ``code`` is a gRPC code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
