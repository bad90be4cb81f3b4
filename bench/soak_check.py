"""The soak's verdict, pure: calls, kills and what the apps executed in; numbers out.

The retry contract (README, "Which failures each kind of retry resends"): with only
Dapr's built-in retries in force, a call may fail only if it may have reached an
instance that was killed while the call was pending, as far as the caller can know:
the caller learns that an instance died only when it reads the reset of its
connection, so a call it sent on that connection in the meantime may have been
delivered for all it can tell. So a failed call is **allowed** exactly when all of
these hold, and **beyond the contract** otherwise:

1. the caller answered it with Dapr's error: HTTP 500, ``errorCode`` ``ERR_DIRECT_INVOKE``
   (not a wire error, a timeout of the load generator, or another code);
2. it was pending while an instance was down: written before that instance's
   replacement sidecar answered its health check, answered after its sidecar was sent
   SIGKILL (``time.monotonic()`` in both processes);
3. its error says the connection was lost under it (``connection lost``), so it went
   out on a connection made before the kill; written after the killed sidecar had
   been reaped, it went out on the dead instance's connection before the caller
   noticed (not through a new connection, which is refused and retried);
4. if an app ran it, that was the app of the killed instance (a call that the
   surviving instance ran has no excuse to fail).

And for every call: no id is executed more than once (by both apps together), and every
successful call was executed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DAPR_ERROR = "ERR_DIRECT_INVOKE"


@dataclass(frozen=True)
class Call:
    id: str
    start: float
    end: float
    status: int
    error: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Kill:
    instance: int
    start: float  # SIGKILL sent
    end: float  # the process reaped
    ready: float  # its replacement answered GET /v1.0/healthz


@dataclass
class Verdict:
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    allowed: int = 0  # failures the contract allows ...
    allowed_after_death: int = 0  # ... of which written after the killed sidecar was reaped
    allowed_sample: str = ""  # what one of them was answered
    beyond: list[Call] = field(default_factory=list)  # failures it does not
    executions: int = 0  # by both apps, of this run's ids
    executed_failed: int = 0  # failed calls the app ran anyway (allowed ones)
    duplicates: list[str] = field(default_factory=list)  # ids executed more than once
    lost: list[str] = field(default_factory=list)  # succeeded but never executed

    @property
    def passed(self) -> bool:
        return self.calls > 0 and not self.beyond and not self.duplicates and not self.lost


def excusing_kill(call: Call, kills: Sequence[Kill], ran_on: Sequence[int]) -> Kill | None:
    """The kill that the contract allows this failed call to fail by (the module
    docstring's rules), or None."""
    if call.status != 500 or call.error != DAPR_ERROR:
        return None
    for kill in kills:
        if not (call.start <= kill.ready and kill.start <= call.end):
            continue
        if "connection lost" not in call.detail:
            continue
        if all(instance == kill.instance for instance in ran_on):
            return kill
    return None


def judge(
    calls: Iterable[Call], kills: Sequence[Kill], executed: Mapping[str, Sequence[int]]
) -> Verdict:
    """``executed``: for each id, the instances whose app ran it (once per execution)."""
    verdict = Verdict()
    for call in calls:
        verdict.calls += 1
        ran_on = executed.get(call.id, ())
        verdict.executions += len(ran_on)
        if len(ran_on) > 1:
            verdict.duplicates.append(call.id)
        if call.ok:
            verdict.succeeded += 1
            if not ran_on:
                verdict.lost.append(call.id)
            continue
        verdict.failed += 1
        if ran_on:
            verdict.executed_failed += 1
        kill = excusing_kill(call, kills, ran_on)
        if kill is not None:
            verdict.allowed += 1
            verdict.allowed_after_death += call.start > kill.end
            verdict.allowed_sample = verdict.allowed_sample or call.detail
        else:
            verdict.beyond.append(call)
    return verdict


def executions(logs: Sequence[Iterable[str]], prefix: str) -> dict[str, list[int]]:
    """Which instance ran which id, from each app's log of request paths (one per line)."""
    ran: dict[str, list[int]] = {}
    marker = f"/soak/{prefix}-"
    for instance, lines in enumerate(logs):
        for line in lines:
            at = line.find(marker)
            if at >= 0:
                ran.setdefault(line[at + len("/soak/") :].strip(), []).append(instance)
    return ran


def read_calls(lines: Iterable[str]) -> list[Call]:
    return [Call(**json.loads(line)) for line in lines if line.strip()]


def histogram_quantile(q: float, exposition: str, name: str) -> float:
    """Prometheus's ``histogram_quantile`` over every series of ``name`` summed: linear
    within the bucket holding the q-th observation; NaN without observations."""
    buckets: dict[float, float] = {}
    for line in exposition.splitlines():
        if not line.startswith(name + "_bucket{"):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = math.inf if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    if not buckets or buckets.get(math.inf, 0.0) == 0:
        return math.nan
    rank = q * buckets[math.inf]
    lower_bound, lower_count = 0.0, 0.0
    for bound in sorted(buckets):
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                return lower_bound  # Prometheus answers the highest finite bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound
