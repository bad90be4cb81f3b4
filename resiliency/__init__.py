"""tether's resiliency engine: Dapr ``Resiliency`` YAML into typed policies, and one async runner.

Pure: imports only the standard library, PyYAML and ``yamlcheck`` (durations, problem
wording). Time, sleeping and randomness are injected, so everything runs on a fake
clock in tests.

Loading (``resiliency.loader``)::

    config, report = load_resiliency([resources_path], app_id="checkout")
    for line in report.lines():      # "FILE: spec.policies.retries.x.duration: ..."
        log.error(line)
    report.raise_for_problems()      # --strict-config: ConfigInvalid(problems)
    report.notes                     # documents skipped on purpose (other kind, scopes)
    report.rejected                  # Locations (file, document) of what was left out

``load_resiliency(paths, app_id=None)`` reads every ``*.yaml``/``*.yml`` of each
folder (or the files given); ``app_id=None`` ignores ``scopes`` (for ``tether
resiliency check``). ``load_texts([(name, text), ...], app_id)`` does the same
for text in memory. A document with any problem is rejected whole; the rest are
merged into a frozen ``ResiliencyConfig``. ``summarize(config)`` gives short lines
describing what a config sets up.

Applying (``resiliency.engine``)::

    engine = ResiliencyEngine(config, clock=time.monotonic, sleep=asyncio.sleep,
                              on_breaker_state_change=hook)
    policy = engine.policy_for("orders")          # AppPolicy
    buffer = policy.has_retries and body_fits     # replay needs a buffered body
    runner = engine.runner_for("orders", method, streaming=not buffer)
    response = await runner.run(send_once, classify, errors=classify_error,
                                on_attempt=count_attempt)
    engine.reload(new_config)                     # unchanged breakers keep their state

``send_once(attempt)`` performs one attempt (``attempt`` counts from 1; send
``tether-attempt: N`` when ``policy.attempt_header``). ``classify(response)``
returns an ``Outcome``: ``SUCCESS`` for Dapr's 200-399, else
``Outcome(False, code=status, retry_after=seconds_or_None)``;
``connection_failure=True`` marks a sidecar-hop Unavailable/Unauthenticated whose
request provably never reached the callee app, which the built-in service retries
retry inside the attempt (at most once per execution). ``classify_error(exc)``
maps an exception to an Outcome (e.g. transport errors to ``TRANSPORT_FAILURE``)
or returns None to let it propagate. When retries run out ``run`` returns the
last response or raises the last exception; ``CircuitOpen`` / ``TooManyRequests``
(both ``BreakerRejected``) mean the app saw nothing; ``AttemptTimedOut`` and
``DeadlineExceeded`` are timeouts.

Beyond Dapr (opt-in keys in the same YAML; Dapr files behave as in Dapr)::

    timeouts:
      bounded: {perAttempt: 1s, overall: 5s}   # overall deadline across attempts
    retries:
      careful:
        policy: exponential
        jitter: true                 # full jitter: uniform(0, interval)
        respectRetryAfter: true      # wait Retry-After (from Outcome.retry_after) ...
        maxRetryAfter: 10s           # ... capped here (default 30s)
        budget: {ratio: 0.2, minRetriesPerSecond: 3, window: 10s}
        attemptHeader: true          # caller sends tether-attempt: N
"""

from resiliency.circuit_breaker import BreakerCache, BreakerState, CircuitBreaker, Counts
from resiliency.engine import ResiliencyEngine
from resiliency.errors import (
    AttemptTimedOut,
    BreakerRejected,
    CircuitOpen,
    ConfigInvalid,
    DeadlineExceeded,
    ResiliencyError,
    TooManyRequests,
)
from resiliency.loader import LoadReport, load_resiliency, load_texts
from resiliency.lookup import AppPolicy, resolve_app_policy
from resiliency.policies import ResiliencyConfig
from resiliency.runner import SUCCESS, TRANSPORT_FAILURE, Outcome, Runner
from resiliency.summary import summarize
from yamlcheck import Location, Problem

__all__ = [
    "SUCCESS",
    "TRANSPORT_FAILURE",
    "AppPolicy",
    "AttemptTimedOut",
    "BreakerCache",
    "BreakerRejected",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigInvalid",
    "Counts",
    "DeadlineExceeded",
    "LoadReport",
    "Location",
    "Outcome",
    "Problem",
    "ResiliencyConfig",
    "ResiliencyEngine",
    "ResiliencyError",
    "Runner",
    "TooManyRequests",
    "load_resiliency",
    "load_texts",
    "resolve_app_policy",
    "summarize",
]
