"""How a TLS peer is refused after the handshake, on either side of the lean gRPC
stack. The chain was already verified by ``ssl``; what a peer's certificate must
*say* is decided by whoever builds the connection (the server's ``identify``, the
client's ``verify_peer``), which raises PeerRefused with a one-line reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class PeerRefused(Exception):
    """The peer's certificate carries no identity we accept; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Given ``getpeercert()`` (None without a certificate); raises PeerRefused.
PeerCheck = Callable[[Any], object]
