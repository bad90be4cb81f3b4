"""Where the instances of an app come from: the one interface every discovery system
(the SQLite registry, DNS, Kubernetes, mDNS) implements for the resolver.

A source only answers "which instances does this app have, and for how long may
that answer be trusted". Caching, stale answers, balancing and outlier ejection
are the resolver's, the same for every source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy.core.errors import TetherError
from proxy.discovery.registry import Endpoint


@dataclass(frozen=True, slots=True)
class Instances:
    """A successful answer: the instances, and its lifetime in seconds (None: the
    source gives none, the resolver's default applies)."""

    endpoints: Sequence[Endpoint]
    ttl: float | None = None


class SourceError(TetherError):
    """A lookup did not produce an answer."""


class AppNotFound(SourceError):
    """A definite negative: the app has no instances (NXDOMAIN, no rows).

    ``ttl`` is how long the negative answer may be kept (None: the resolver's default)."""

    def __init__(self, message: str, ttl: float | None = None) -> None:
        super().__init__(message)
        self.ttl = ttl


class SourceUnavailable(SourceError):
    """A transient failure (DNS server unreachable, registry locked): the last good
    answer should be kept rather than the call failed."""


class InstanceSource(Protocol):
    """One discovery system. ``lookup`` must not block the event loop."""

    async def lookup(self, app_id: str, namespace: str) -> Instances:
        """The instances of ``app_id`` in ``namespace``; raises AppNotFound or
        SourceUnavailable."""
        ...

    async def start(self) -> None:
        """Announce this sidecar where the system needs it (SQLite row, mDNS record);
        nothing for systems that others maintain (DNS, Kubernetes)."""
        ...

    async def close(self) -> None:
        """Withdraw the announcement and release resources."""
        ...
