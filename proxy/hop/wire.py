"""What the hop's transports share, so that none imports another's server:
how large a body may ride inside one multiplexed frame, how long a caller waits
for a multiplexed answer, and how a servicer learns its caller and refuses a call."""

from __future__ import annotations

from typing import NoReturn

from proxy.grpcwire.server_call import ServerCall
from proxy.hop.header_rules import CallerIdentity

# Bodies up to this size travel inside the frame, both ways.
INLINE_LIMIT = 256 * 1024

# How long a multiplexed call waits for its answer when no resiliency timeout
# bounds it. Dapr sets no deadline of its own; the official SDKs give up after
# 60 s (DAPR_HTTP_TIMEOUT_SECONDS), so an answer later than that has nobody
# left to read it. A dead peer is noticed sooner, by keepalive (10 s + 5 s);
# this bounds a live peer that never answers. Longer calls: set a timeout policy.
MUX_CALL_TIMEOUT = 60.0

# The callee answers a call with one of these codes only when it did not start it
# (never after handing it to the app): the caller's built-in retries may resend it.
NOT_STARTED_CODES = frozenset({"UNAVAILABLE", "UNAUTHENTICATED"})


def peer_identity(call: ServerCall) -> CallerIdentity | None:
    """What the server found in the caller's certificate (once per connection)."""
    peer = call.peer
    return peer if isinstance(peer, CallerIdentity) else None


def abort(call: ServerCall, code: str, message: str) -> NoReturn:
    """End the RPC with a gRPC status (``code`` is its name, as in CallRejected)."""
    call.abort(code, message)
