"""The resolver every discovery system shares: cache, refresh, balance, eject, probe.

Per call (``resolve``), for the key (app ID, namespace):

- **A fresh answer** (within its TTL) is used at once: no I/O, no await on the hot path.
- **An expired or stale answer** is used at once too, and one background refresh is
  started; the cache (``AnswerCache``) hands the refresh to one caller per retry period
  and at most one refresh per key is ever in flight.
- **No answer** (first call, or after a failure): the caller waits for the one refresh
  in flight (starting it if there is none). A definite "no such app" (NXDOMAIN, no
  rows) fails the call at once and is cached for the negative TTL, so a retry policy
  does not turn it into seconds of retries.
- **Refresh failures** (DNS server unreachable, registry locked) keep the last good
  answer for the stale window; the first failure of an outage is logged once, and the
  recovery once.

The instance for a call is chosen by a ``Balancer`` (P2C over peak-EWMA cost) among the
instances its ``OutlierDetector`` has not ejected; both are per app and keep their state
across refreshes. The invoker reports every call (``started`` / ``finished``): latency
feeds the balancer, connection failures the outlier detector. Ejected instances come
back through probes, a plain TCP connect run by a background task while anything is
ejected, so no real call is spent on an instance that may still be down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.discovery.answer_cache import AnswerCache, CachePolicy, Failure, State
from proxy.discovery.balancer import Balancer, BalancerPolicy
from proxy.discovery.outlier import Ejection, OutlierDetector, OutlierPolicy
from proxy.discovery.registry import Endpoint
from proxy.discovery.resolver import AppNotFoundError, RegistryUnavailable, ResolveError
from proxy.discovery.source import AppNotFound, InstanceSource, SourceError, SourceUnavailable

log = logging.getLogger("tether.resolve")

Key = tuple[str, str]  # (app ID, namespace)
Answer = tuple[Endpoint, ...]
Probe = Callable[[Endpoint], Awaitable[bool]]

# Seconds between two passes over ejected instances whose ejection time is over.
PROBE_INTERVAL = 1.0


class ResolutionObserver(Protocol):
    """Where resolution events go (the sidecar's metrics); every method is cheap."""

    def resolution_lookup(self, app_id: str, namespace: str, result: str) -> None:
        """A source lookup ended: ``ok``, ``not_found`` or ``unavailable``."""

    def resolution_failed(self, app_id: str, namespace: str, reason: str) -> None:
        """A call could not be given an instance: ``not_found`` or ``unavailable``."""

    def resolution_stale(self, app_id: str, namespace: str, age: float) -> None:
        """A call used an answer past its TTL (``age`` seconds old) because refreshes fail."""

    def resolution_answer(self, app_id: str, namespace: str, instances: int) -> None:
        """A fresh answer arrived with ``instances`` instances."""

    def resolution_ejection(self, app_id: str, namespace: str, ejected: int) -> None:
        """An instance was ejected; ``ejected`` are out of rotation now."""

    def resolution_returned(self, app_id: str, namespace: str, ejected: int) -> None:
        """An ejected instance answered its probe and is back; ``ejected`` remain out."""


@dataclass
class _App:
    balancer: Balancer
    outlier: OutlierDetector
    instances: Answer = ()


class BalancedResolver:
    """``Resolver`` over any ``InstanceSource``; one per sidecar, on one event loop.

    ``clock`` is monotonic seconds (shared by the cache, balancer and detector);
    ``probe`` checks an ejected instance without a real call; ``probe_interval`` None
    leaves probing to explicit ``probe_due`` calls (tests).
    """

    def __init__(
        self,
        source: InstanceSource,
        *,
        clock: Callable[[], float],
        probe: Probe,
        cache: CachePolicy | None = None,
        outlier: OutlierPolicy | None = None,
        balancer: BalancerPolicy | None = None,
        observer: ResolutionObserver | None = None,
        rng: random.Random | None = None,
        probe_interval: float | None = PROBE_INTERVAL,
    ) -> None:
        self._source = source
        self._clock = clock
        self._probe = probe
        self._cache: AnswerCache[Key, Answer] = AnswerCache(cache, clock=clock)
        # Probing is ours to do, so an instance whose ejection ends waits for its probe.
        base = outlier or OutlierPolicy()
        self._outlier_policy = OutlierPolicy(
            base.consecutive_failures,
            base.base_ejection_time,
            base.max_ejection_time,
            base.max_ejection_percent,
            base.interval,
            probing=True,
        )
        self._balancer_policy = balancer or BalancerPolicy()
        self._observer = observer
        self._rng = rng or random.Random()
        self._probe_interval = probe_interval
        self._apps: dict[Key, _App] = {}
        self._refreshing: dict[Key, asyncio.Task[SourceError | None]] = {}
        self._outages: set[Key] = set()
        self._prober: asyncio.Task[None] | None = None
        self._closed = False

    # -- the call path -----------------------------------------------------------------

    async def resolve(self, app_id: str, namespace: str) -> Endpoint:
        key = (app_id, namespace)
        found = self._cache.get(key)
        if found.state is State.FRESH:
            return self._pick(key)
        if found.answer is not None:
            if found.refresh:
                self._start_refresh(key)
            if found.state is State.STALE and self._observer is not None:
                self._observer.resolution_stale(app_id, namespace, found.age)
            return self._pick(key)
        if found.state is State.NEGATIVE:
            raise self._not_found(key, None)
        task = self._refreshing.get(key)
        if task is None:
            if not found.refresh:
                raise self._unavailable(key, None)  # failing, and not yet time to retry
            task = self._start_refresh(key)
        # Shielded: a caller that gives up must not cancel the lookup others wait for.
        error = await asyncio.shield(task)
        found = self._cache.get(key)
        if found.answer is not None:
            return self._pick(key)
        if found.state is State.NEGATIVE:
            raise self._not_found(key, error)
        raise self._unavailable(key, error)

    def _pick(self, key: Key) -> Endpoint:
        app = self._apps[key]
        return app.balancer.pick(app.outlier.ejected())

    def started(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        app = self._apps.get((app_id, namespace))
        if app is not None:
            app.balancer.started(endpoint)

    def finished(
        self, app_id: str, namespace: str, endpoint: Endpoint, latency: float, ok: bool
    ) -> None:
        app = self._apps.get((app_id, namespace))
        if app is None:
            return
        app.balancer.finished(endpoint, latency, ok)
        self._record(app_id, namespace, app, endpoint, ok)

    def evict(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        app = self._apps.get((app_id, namespace))
        if app is not None:
            self._record(app_id, namespace, app, endpoint, False)

    def _record(self, app_id: str, namespace: str, app: _App, endpoint: Endpoint, ok: bool) -> None:
        ejection = app.outlier.record(endpoint, ok)
        if ejection is not None:
            self._ejected(app_id, namespace, app, ejection)

    def _ejected(self, app_id: str, namespace: str, app: _App, ejection: Ejection) -> None:
        out = len(app.outlier.ejected())
        log.warning(
            "instance %s of %s.%s ejected for %gs after connection failures (%d of %d out)",
            ejection.endpoint.address,
            app_id,
            namespace,
            ejection.duration,
            out,
            len(app.instances),
        )
        if self._observer is not None:
            self._observer.resolution_ejection(app_id, namespace, out)
        self._ensure_prober()

    def _not_found(self, key: Key, error: SourceError | None) -> ResolveError:
        if self._observer is not None:
            self._observer.resolution_failed(*key, "not_found")
        detail = f" ({error})" if isinstance(error, AppNotFound) else ""
        return AppNotFoundError(f"app id {key[0]} not found in namespace {key[1]}{detail}")

    def _unavailable(self, key: Key, error: SourceError | None) -> ResolveError:
        if self._observer is not None:
            self._observer.resolution_failed(*key, "unavailable")
        detail = f": {error}" if error is not None else " (lookups are failing)"
        return RegistryUnavailable(f"cannot resolve app id {key[0]} in namespace {key[1]}{detail}")

    # -- refreshing --------------------------------------------------------------------

    def _start_refresh(self, key: Key) -> asyncio.Task[SourceError | None]:
        task = self._refreshing.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._refresh(key), name=f"tether-resolve-{key[0]}.{key[1]}"
            )
            self._refreshing[key] = task
        return task

    async def _refresh(self, key: Key) -> SourceError | None:
        """One lookup; its outcome goes into the cache. Returns the error, if any."""
        app_id, namespace = key
        try:
            try:
                instances = await self._source.lookup(app_id, namespace)
            except AppNotFound as exc:
                self._lookup_result(key, "not_found")
                self._absent(key, exc.ttl)
                return exc
            except SourceUnavailable as exc:
                self._lookup_result(key, "unavailable")
                self._failed(key, exc)
                return exc
            endpoints = tuple(dict.fromkeys(instances.endpoints))
            if not endpoints:
                self._lookup_result(key, "not_found")
                self._absent(key, instances.ttl)
                return AppNotFound("no instances", instances.ttl)
            self._lookup_result(key, "ok")
            self._store(key, endpoints, instances.ttl)
            return None
        finally:
            self._refreshing.pop(key, None)

    def _lookup_result(self, key: Key, result: str) -> None:
        if self._observer is not None:
            self._observer.resolution_lookup(*key, result)

    def _store(self, key: Key, endpoints: Answer, ttl: float | None) -> None:
        self._cache.store(key, endpoints, ttl)
        if key in self._outages:
            self._outages.discard(key)
            log.info("resolving %s.%s works again", *key)
        app = self._apps.get(key)
        if app is None:
            app = _App(
                Balancer(self._balancer_policy, clock=self._clock, rng=self._rng),
                OutlierDetector(self._outlier_policy, clock=self._clock),
            )
            self._apps[key] = app
            if len(self._apps) > self._cache.policy.max_answers:
                # The cache has dropped its least used answers: their state goes too.
                for gone in [k for k in self._apps if not self._cache.has_answer(k)]:
                    del self._apps[gone]
        if app.instances != endpoints:
            app.balancer.update(endpoints)
            app.outlier.update(endpoints)
            app.instances = endpoints
        if self._observer is not None:
            self._observer.resolution_answer(*key, len(endpoints))

    def _absent(self, key: Key, ttl: float | None) -> None:
        if self._cache.not_found(key, ttl) is State.NEGATIVE:
            # The app is gone: its balancing and ejection state goes with it.
            self._apps.pop(key, None)
            self._outages.discard(key)

    def _failed(self, key: Key, error: SourceUnavailable) -> None:
        outcome = self._cache.failed(key)
        if outcome is Failure.STALE_STARTED:
            self._outages.add(key)
            window = self._cache.policy.stale_window
            log.warning(
                "cannot refresh %s.%s (%s); using the last answer for up to %gs",
                *key,
                error,
                window,
            )
        elif outcome is Failure.NO_ANSWER:
            if key in self._outages:
                log.warning("resolving %s.%s still fails past the stale window: %s", *key, error)
            elif key not in self._apps:
                log.warning("cannot resolve %s.%s: %s", *key, error)
            self._outages.discard(key)
            self._apps.pop(key, None)

    # -- probing ejected instances -----------------------------------------------------

    def _ensure_prober(self) -> None:
        if self._probe_interval is None or self._closed:
            return
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(
                self._probe_loop(self._probe_interval), name="tether-resolve-probes"
            )

    async def _probe_loop(self, interval: float) -> None:
        while any(app.outlier.ejected() for app in self._apps.values()):
            await asyncio.sleep(interval)
            await self.probe_due()

    async def probe_due(self) -> int:
        """Probe every instance whose ejection time is over; returns how many were probed."""
        due = [
            (key, app, endpoint)
            for key, app in list(self._apps.items())
            for endpoint in app.outlier.due_for_probe()
        ]
        if not due:
            return 0
        results = await asyncio.gather(*(self._probe(endpoint) for _, _, endpoint in due))
        for (key, app, endpoint), ok in zip(due, results, strict=True):
            if self._apps.get(key) is not app:
                continue  # the app went away while probing
            ejection = app.outlier.probe_result(endpoint, ok)
            if ejection is not None:
                log.info(
                    "instance %s of %s.%s still unreachable; ejected for %gs",
                    endpoint.address,
                    *key,
                    ejection.duration,
                )
            elif ok:
                app.balancer.rejoin(endpoint)
                out = len(app.outlier.ejected())
                log.info("instance %s of %s.%s is back in rotation", endpoint.address, *key)
                if self._observer is not None:
                    self._observer.resolution_returned(*key, out)
        return len(due)

    async def close(self) -> None:
        """Stop refreshes and probes (the source is closed by its owner)."""
        self._closed = True
        tasks: list[asyncio.Task[object]] = [*self._refreshing.values()]
        if self._prober is not None:
            tasks.append(self._prober)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._refreshing.clear()
        self._apps.clear()
