"""Outlier ejection for the instances of one app: Envoy's consecutive-failure rule.

An instance whose calls fail at the transport (connection refused or reset, connect
timeout, broken stream) ``consecutive_failures`` times in a row is taken out of
rotation. Only transport failures count: an app that answers 500 is reachable, and
its errors are the resiliency policy's business, not this module's.

Ejection length (Envoy's ``base_ejection_time`` / ``max_ejection_time``): the n-th
ejection in a row lasts ``min(base * n, max)``. ``n`` stops growing once
``base * n >= max + base`` (as Envoy) so that it can decay back in bounded time, and it
drops by one for every ``interval`` the instance spends back in rotation, so an
instance that stays healthy is ejected for ``base`` again next time.

Never more than ``max_ejection_percent`` of the instances are out at once (Envoy's
rule: eject only if ``100 * (out + 1) / instances <= percent``), except that one
instance may always be out (Envoy's ``always_eject_one_host``), so one of two can be
ejected. A failure refused by that cap is still counted; the next one tries again.
When every instance is out, the balancer routes to them anyway (its panic mode).

Coming back, without costing real calls when the caller can probe:

- ``probing=True``: when the ejection time ends the instance is *due for a probe*
  (``due_for_probe``) and stays out of rotation until ``probe_result`` says it
  answered; a failed probe ejects it again for longer. The caller must report every
  probe it was handed (its probe has its own timeout).
- ``probing=False``: when the ejection time ends the instance returns *on probation*:
  its first result decides. A success makes it healthy; a failure ejects it again at
  once (Linkerd's probation) rather than after ``consecutive_failures`` more.

Results of real calls reported while an instance is out are ignored (calls that were
in flight when it was ejected say nothing about whether it has recovered).

Time is read from the injected monotonic ``clock`` (seconds); transitions that fall
due are applied lazily on the next method call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from proxy.discovery.registry import Endpoint


@dataclass(frozen=True)
class OutlierPolicy:
    """Defaults are Envoy's except ``max_ejection_percent`` (Envoy: 10)."""

    consecutive_failures: int = 5  # Envoy consecutive_5xx
    base_ejection_time: float = 30.0  # seconds
    max_ejection_time: float = 300.0  # seconds
    # Half: with the 2-5 replicas typical here, Envoy's 10% allows only the one the
    # "at least one" rule grants. Not more than half, so a caller whose own network is
    # broken (every instance fails) does not empty its own pool.
    max_ejection_percent: float = 50.0
    interval: float = 10.0  # seconds back in rotation per step of multiplier decay
    probing: bool = False

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ValueError("consecutive_failures must be at least 1")
        if self.base_ejection_time <= 0:
            raise ValueError("base_ejection_time must be positive")
        if self.max_ejection_time < self.base_ejection_time:
            raise ValueError("max_ejection_time must not be less than base_ejection_time")
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError("max_ejection_percent must be between 0 and 100")
        if self.interval <= 0:
            raise ValueError("interval must be positive")


class Phase(StrEnum):
    HEALTHY = "healthy"
    EJECTED = "ejected"  # out until its ejection time ends
    PROBING = "probing"  # ejection time over, out until a probe succeeds (probing=True)
    PROBATION = "probation"  # back in rotation, its next result decides (probing=False)


@dataclass(frozen=True)
class Ejection:
    """What an ejection did, for the caller's log line and metrics."""

    endpoint: Endpoint
    duration: float  # seconds out of rotation
    multiplier: int  # this ejection's n in ``min(base * n, max)``


@dataclass
class _Instance:
    in_rotation_since: float  # start of the current stretch in rotation (decay clock)
    phase: Phase = Phase.HEALTHY
    failures: int = 0  # consecutive transport failures
    multiplier: int = 0
    until: float = 0.0  # end of the current ejection
    probe_handed_out: bool = False


class OutlierDetector:
    """Per-instance ejection state for one app; feed it every transport-level result."""

    def __init__(self, policy: OutlierPolicy | None = None, *, clock: Callable[[], float]) -> None:
        self.policy = policy or OutlierPolicy()
        self._clock = clock
        self._instances: dict[Endpoint, _Instance] = {}
        self._out: frozenset[Endpoint] = frozenset()
        self.ejections_total = 0

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the instance set; instances that stay keep their state."""
        now = self._clock()
        self._instances = {
            endpoint: self._instances.get(endpoint) or _Instance(in_rotation_since=now)
            for endpoint in endpoints
        }
        self._refresh_out()

    def ejected(self) -> frozenset[Endpoint]:
        """The instances out of rotation now (ejected or awaiting a probe)."""
        self._advance(self._clock())
        return self._out

    def phase(self, endpoint: Endpoint) -> Phase | None:
        """The instance's phase now, None if it is not one of this app's instances."""
        self._advance(self._clock())
        instance = self._instances.get(endpoint)
        return instance.phase if instance else None

    def record(self, endpoint: Endpoint, ok: bool) -> Ejection | None:
        """The transport outcome of a real call; returns the ejection it caused, if any."""
        now = self._clock()
        self._advance(now)
        instance = self._instances.get(endpoint)
        if instance is None or instance.phase in (Phase.EJECTED, Phase.PROBING):
            return None
        if ok:
            instance.failures = 0
            instance.phase = Phase.HEALTHY
            return None
        instance.failures += 1
        on_trial = instance.phase is Phase.PROBATION
        instance.phase = Phase.HEALTHY  # a refused re-ejection leaves it in, counting
        if (on_trial or instance.failures >= self.policy.consecutive_failures) and (
            self._may_eject()
        ):
            return self._eject(endpoint, instance, now)
        return None

    def due_for_probe(self) -> list[Endpoint]:
        """Instances whose ejection ended and that need a probe; each is handed out once."""
        self._advance(self._clock())
        due: list[Endpoint] = []
        for endpoint, instance in self._instances.items():
            if instance.phase is Phase.PROBING and not instance.probe_handed_out:
                instance.probe_handed_out = True
                due.append(endpoint)
        return due

    def probe_result(self, endpoint: Endpoint, ok: bool) -> Ejection | None:
        """A probe's outcome: success returns the instance to rotation, failure re-ejects."""
        now = self._clock()
        self._advance(now)
        instance = self._instances.get(endpoint)
        if instance is None or instance.phase is not Phase.PROBING:
            return None
        if ok:
            instance.phase = Phase.HEALTHY
            instance.failures = 0
            instance.in_rotation_since = now
            self._refresh_out()
            return None
        return self._eject(endpoint, instance, now)  # already out: the cap is unchanged

    def _may_eject(self) -> bool:
        out = len(self._out)
        if out == 0:
            return True  # always at least one
        return 100 * (out + 1) <= self.policy.max_ejection_percent * len(self._instances)

    def _eject(self, endpoint: Endpoint, instance: _Instance, now: float) -> Ejection:
        policy = self.policy
        multiplier = instance.multiplier
        if instance.phase is not Phase.PROBING:
            # Envoy takes one off the multiplier per interval spent back in rotation.
            steps = int((now - instance.in_rotation_since) // policy.interval)
            multiplier = max(0, multiplier - steps)
        if policy.base_ejection_time * multiplier < (
            policy.max_ejection_time + policy.base_ejection_time
        ):
            multiplier += 1
        duration = min(policy.base_ejection_time * multiplier, policy.max_ejection_time)
        instance.multiplier = multiplier
        instance.phase = Phase.EJECTED
        instance.until = now + duration
        instance.failures = 0
        instance.probe_handed_out = False
        self.ejections_total += 1
        self._refresh_out()
        return Ejection(endpoint, duration, multiplier)

    def _advance(self, now: float) -> None:
        changed = False
        for endpoint in self._out:
            instance = self._instances[endpoint]
            if instance.phase is Phase.EJECTED and now >= instance.until:
                changed = True
                if self.policy.probing:
                    instance.phase = Phase.PROBING
                else:
                    instance.phase = Phase.PROBATION
                    instance.in_rotation_since = now
        if changed:
            self._refresh_out()

    def _refresh_out(self) -> None:
        self._out = frozenset(
            endpoint
            for endpoint, instance in self._instances.items()
            if instance.phase in (Phase.EJECTED, Phase.PROBING)
        )
