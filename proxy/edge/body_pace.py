"""How fast a client sends a request body, and when it is too slow to keep waiting for.

Only the time the server spends waiting for the client counts: while the body's reader
is busy elsewhere (forwarding what it has to a slow upstream) reading is paused, and
that pause is not the client's fault. Two rules, checked while waiting:

- no byte for ``idle_timeout`` seconds (nginx's ``client_body_timeout``);
- after ``grace`` seconds of waiting, fewer than ``min_rate`` bytes per waited second on
  average (Kestrel's ``MinRequestBodyDataRate``: 240 bytes/s after 5 s), which stops a
  client that trickles a byte now and then to dodge the first rule.

Pure: the caller passes the clock's readings in.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BODY_IDLE_TIMEOUT = 30.0
DEFAULT_MIN_BODY_RATE = 240.0  # bytes per second; 0 turns the rate rule off
DEFAULT_BODY_RATE_GRACE = 5.0
# How often the shell checks while it waits (the rules need no finer grain).
CHECK_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class BodyPacePolicy:
    idle_timeout: float = DEFAULT_BODY_IDLE_TIMEOUT
    min_rate: float = DEFAULT_MIN_BODY_RATE
    grace: float = DEFAULT_BODY_RATE_GRACE

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0 or self.min_rate < 0 or self.grace < 0:
            raise ValueError("need idle_timeout > 0, min_rate >= 0 and grace >= 0")


class BodyPace:
    """The waiting time and bytes of one request body."""

    __slots__ = ("_bytes", "_last_progress", "_policy", "_waited", "_waiting_since")

    def __init__(self, policy: BodyPacePolicy, now: float) -> None:
        self._policy = policy
        self._bytes = 0
        self._waited = 0.0
        self._waiting_since: float | None = None
        self._last_progress = now

    @property
    def waiting(self) -> bool:
        return self._waiting_since is not None

    def wait(self, now: float) -> None:
        """The server waits for the client from now on."""
        if self._waiting_since is None:
            self._waiting_since = now

    def pause(self, now: float) -> None:
        """The server stops waiting (it has what it asked for)."""
        since = self._waiting_since
        if since is not None:
            self._waited += now - since
            self._waiting_since = None

    def received(self, size: int, now: float) -> None:
        self._bytes += size
        self._last_progress = now

    def verdict(self, now: float) -> str | None:
        """Why the client is too slow, or None while it is not (or nobody waits)."""
        since = self._waiting_since
        if since is None:
            return None
        policy = self._policy
        if now - max(since, self._last_progress) >= policy.idle_timeout:
            return f"no request body bytes for {policy.idle_timeout:g}s"
        waited = self._waited + now - since
        if policy.min_rate and waited >= policy.grace and self._bytes < policy.min_rate * waited:
            return (
                f"request body arrives at {self._bytes / waited:.0f} bytes/s, "
                f"under the minimum of {policy.min_rate:g} bytes/s"
            )
        return None


class BodyTimedOut(TimeoutError):
    """The client sent its body too slowly; the edge answers 408 and closes."""
