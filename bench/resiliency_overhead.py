"""CPU the resiliency layer adds per call, measured in-process.

Runs the same trivial async operation N times directly and N times through
``ResiliencyEngine.runner_for(...).run(...)`` with a policy of all three kinds
(timeout, retry, circuit breaker), and prints the difference per call.

    python -m bench.resiliency_overhead [--calls 200000]
"""

from __future__ import annotations

import argparse
import time

import uvloop

from resiliency import SUCCESS, Outcome, ResiliencyEngine, load_texts

POLICY = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: bench}
spec:
  policies:
    timeouts: {general: 5s}
    retries:
      important: {policy: constant, duration: 50ms, maxRetries: 3,
                  matching: {httpStatusCodes: "500-599,429"}}
    circuitBreakers:
      simple: {maxRequests: 1, timeout: 30s, trip: consecutiveFailures > 5}
  targets:
    apps:
      orders: {timeout: general, retry: important, circuitBreaker: simple}
"""


async def operation(attempt: int) -> int:
    return 200


def classify(status: int) -> Outcome:
    return SUCCESS


async def measure(calls: int) -> None:
    config, report = load_texts([("bench.yaml", POLICY)], app_id="checkout")
    report.raise_for_problems()
    engine = ResiliencyEngine(config)
    for _ in range(1000):  # warm up caches
        await engine.runner_for("orders", "neworder").run(operation, classify)

    start = time.process_time()
    for _ in range(calls):
        await operation(1)
    direct = time.process_time() - start

    start = time.process_time()
    for _ in range(calls):
        await engine.runner_for("orders", "neworder").run(operation, classify)
    wrapped = time.process_time() - start

    print(f"calls: {calls}")
    print(f"direct:          {direct / calls * 1e6:7.2f} µs CPU per call")
    print(f"with resiliency: {wrapped / calls * 1e6:7.2f} µs CPU per call")
    print(
        f"added:           {(wrapped - direct) / calls * 1e6:7.2f} µs CPU per call (target <= 20)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    uvloop.run(measure(parser.parse_args().calls))


if __name__ == "__main__":
    main()
