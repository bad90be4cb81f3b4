"""Resolved names and what to do with them: TTLs, stale answers, negative answers.

Keys are whatever the resolver looks up (a DNS name, an app ID and namespace); answers
are opaque values (typically a tuple of endpoints). The cache decides, per lookup,
whether an answer may be used and whether this caller should refresh it. It does no
I/O: the resolver reports each outcome with ``store``, ``not_found`` or ``failed``.

Defaults (``CachePolicy``) and why:

- **TTL floor 1 s.** dnsmasq answers with TTL 0 unless told otherwise, and so do other
  discovery DNS servers; 1 s caps the cost at one query per second per name while a new
  or removed instance is seen within about a second. (Envoy's forward-proxy cache floors
  at 5 s; the issue asks for a floor of a few seconds at most.)
- **TTL ceiling 30 s.** New instances must get traffic within one TTL, so a zone with an
  hour's TTL must not hide them for an hour. 30 s is kubeadm's CoreDNS ``ttl``; Dapr's
  own cache keeps addresses 20 s.
- **Default TTL 5 s** when the source gives none (the system resolver via
  ``getaddrinfo``, mDNS): CoreDNS's default TTL and Envoy's ``dns_refresh_rate``.
- **Stale window 300 s.** When refreshes fail (timeout, SERVFAIL, server unreachable)
  the last good answer is served for 300 s from the first failure, enough to ride out a
  DNS server restart or a short outage; instances that died meanwhile fail their calls
  and are ejected by outlier detection, so an old list costs little. Envoy keeps hosts
  forever on failure; past the window tether fails the calls instead.
- **Refresh retries while failing:** 1 s, doubling, at most 10 s (Envoy's
  ``dns_failure_refresh_rate`` shape: a base and 10 times it), handed to one caller at
  a time so a failing server is not hammered by every call.
- **NXDOMAIN** (and an empty successful answer) is a definite answer. For a name that
  never resolved it is cached for ``negative_ttl`` (the server's negative TTL, floored,
  at most 5 s, 5 s if unknown) and the caller fails at once. For a name that had
  answers it is honoured once the answer's TTL is over: Kubernetes answers NXDOMAIN for
  a headless Service with no ready endpoint, so the app is gone, and Envoy's
  STRICT_DNS empties its host set on NXDOMAIN. An NXDOMAIN that arrives while the
  answer is still within its TTL (an early refresh) is ignored; the next refresh asks
  again.
- **Bounded: 1024 answers and 1024 negative or failing names**, each least recently
  used first out. App IDs are chosen by callers, so a flood of unknown names must
  neither grow memory nor evict the answers of apps that exist.

Time is read from the injected monotonic ``clock`` (seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class CachePolicy:
    ttl_floor: float = 1.0
    ttl_ceiling: float = 30.0
    default_ttl: float = 5.0
    negative_ttl: float = 5.0  # the most a negative answer is kept, and the default
    stale_window: float = 300.0
    retry_base: float = 1.0
    retry_max: float = 10.0
    max_answers: int = 1024
    max_negatives: int = 1024

    def __post_init__(self) -> None:
        if not 0 < self.ttl_floor <= self.ttl_ceiling:
            raise ValueError("need 0 < ttl_floor <= ttl_ceiling")
        if self.negative_ttl < self.ttl_floor:
            raise ValueError("negative_ttl must not be less than ttl_floor")
        if self.default_ttl <= 0 or self.stale_window < 0:
            raise ValueError("default_ttl must be positive, stale_window not negative")
        if not 0 < self.retry_base <= self.retry_max:
            raise ValueError("need 0 < retry_base <= retry_max")
        if self.max_answers < 1 or self.max_negatives < 1:
            raise ValueError("max_answers and max_negatives must be at least 1")


class State(StrEnum):
    FRESH = "fresh"  # within its TTL: use it
    EXPIRED = "expired"  # TTL over, no failure yet: use it while one caller refreshes
    STALE = "stale"  # refreshes failed: use the last good answer within the stale window
    NEGATIVE = "negative"  # the name does not exist (cached NXDOMAIN): fail at once
    FAILING = "failing"  # lookups fail and there is no answer: fail unless refreshing
    MISSING = "missing"  # nothing known: resolve


@dataclass(frozen=True)
class Lookup(Generic[V]):
    state: State
    answer: V | None  # set for FRESH, EXPIRED and STALE
    refresh: bool  # this caller should resolve now; told to one caller per retry period
    age: float  # seconds since the answer or negative answer arrived (0 if none)


class Failure(StrEnum):
    """What ``failed`` leaves the caller with."""

    STILL_FRESH = "still-fresh"  # an early refresh failed; the answer is within its TTL
    STALE_STARTED = "stale-started"  # serving the last good answer from now on: log once
    STALE = "stale"  # still serving the last good answer
    NO_ANSWER = "no-answer"  # nothing to serve: the call fails


@dataclass
class _Entry(Generic[V]):
    answer: V | None  # None: a negative or failing entry
    stored: float
    expires: float
    failing_since: float | None = None  # first failed refresh since the last answer
    failures: int = 0  # failed refreshes in a row
    refresh_at: float = 0.0  # when the next refresh may be handed out


class AnswerCache(Generic[K, V]):
    """Answers per key with TTLs, stale-if-error, negative caching and LRU bounds."""

    def __init__(self, policy: CachePolicy | None = None, *, clock: Callable[[], float]) -> None:
        self.policy = policy or CachePolicy()
        self._clock = clock
        self._answers: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._negatives: OrderedDict[K, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers) + len(self._negatives)

    def has_answer(self, key: K) -> bool:
        """Whether an answer (fresh, expired or stale) is held for ``key``; no LRU touch."""
        return key in self._answers

    def get(self, key: K) -> Lookup[V]:
        """What is known about ``key`` now. May hand this caller the refresh."""
        now = self._clock()
        entry = self._answers.get(key)
        if entry is not None:
            if entry.failing_since is None:
                self._answers.move_to_end(key)
                if now < entry.expires:
                    return Lookup(State.FRESH, entry.answer, False, now - entry.stored)
                refresh = self._hand_out(entry, now)
                return Lookup(State.EXPIRED, entry.answer, refresh, now - entry.stored)
            if now < entry.failing_since + self.policy.stale_window:
                self._answers.move_to_end(key)
                refresh = self._hand_out(entry, now)
                return Lookup(State.STALE, entry.answer, refresh, now - entry.stored)
            # The stale window is over: keep the failure count, drop the answer.
            del self._answers[key]
            entry.answer = None
            self._put(self._negatives, key, entry, self.policy.max_negatives)
        entry = self._negatives.get(key)
        if entry is None:
            return Lookup(State.MISSING, None, True, 0.0)
        self._negatives.move_to_end(key)
        if entry.failing_since is None:
            if now < entry.expires:
                return Lookup(State.NEGATIVE, None, False, now - entry.stored)
            del self._negatives[key]
            return Lookup(State.MISSING, None, True, 0.0)
        return Lookup(State.FAILING, None, self._hand_out(entry, now), 0.0)

    def store(self, key: K, answer: V, ttl: float | None = None) -> float:
        """A successful lookup; ``ttl`` is the answer's least record TTL. Returns the TTL kept."""
        policy = self.policy
        kept = policy.default_ttl if ttl is None else ttl
        kept = min(policy.ttl_ceiling, max(policy.ttl_floor, kept))
        now = self._clock()
        self._negatives.pop(key, None)
        entry: _Entry[V] = _Entry(answer, now, now + kept)
        self._put(self._answers, key, entry, policy.max_answers)
        return kept

    def not_found(self, key: K, ttl: float | None = None) -> State:
        """NXDOMAIN or an empty answer; ``ttl`` is the negative TTL if known. Returns the
        state the key is in afterwards (FRESH when the answer's TTL still runs)."""
        now = self._clock()
        entry = self._answers.get(key)
        if entry is not None and entry.failing_since is None and now < entry.expires:
            return State.FRESH
        policy = self.policy
        kept = policy.negative_ttl if ttl is None else ttl
        kept = min(policy.negative_ttl, max(policy.ttl_floor, kept))
        self._answers.pop(key, None)
        negative: _Entry[V] = _Entry(None, now, now + kept)
        self._put(self._negatives, key, negative, policy.max_negatives)
        return State.NEGATIVE

    def failed(self, key: K) -> Failure:
        """A lookup failed without a definite answer (timeout, SERVFAIL, unreachable)."""
        now = self._clock()
        entry = self._answers.get(key)
        if entry is not None:
            if entry.failing_since is None and now < entry.expires:
                return Failure.STILL_FRESH
            started = entry.failing_since is None
            since = now if entry.failing_since is None else entry.failing_since
            entry.failing_since = since
            if now < since + self.policy.stale_window:
                self._note_failure(entry, now)
                return Failure.STALE_STARTED if started else Failure.STALE
            del self._answers[key]
            entry.answer = None
        else:
            entry = self._negatives.get(key)
            if entry is None or entry.failing_since is None:
                entry = _Entry(None, now, now, failing_since=now)
        self._note_failure(entry, now)
        self._put(self._negatives, key, entry, self.policy.max_negatives)
        return Failure.NO_ANSWER

    def _note_failure(self, entry: _Entry[V], now: float) -> None:
        entry.failures += 1
        policy = self.policy
        delay = min(policy.retry_max, policy.retry_base * 2 ** min(entry.failures - 1, 30))
        entry.refresh_at = now + delay

    def _hand_out(self, entry: _Entry[V], now: float) -> bool:
        if now < entry.refresh_at:
            return False
        # If the one told to refresh never reports, another is told after retry_base.
        entry.refresh_at = now + self.policy.retry_base
        return True

    @staticmethod
    def _put(table: OrderedDict[K, _Entry[V]], key: K, entry: _Entry[V], cap: int) -> None:
        table[key] = entry
        table.move_to_end(key)
        while len(table) > cap:
            table.popitem(last=False)
