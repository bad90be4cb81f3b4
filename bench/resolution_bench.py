"""CPU name resolution adds per call, measured in-process on uvloop.

Three lines, each the median of ``--runs`` runs of ``--calls`` calls:

- ``resolve (cache hit)``: ``BalancedResolver.resolve`` with a fresh answer of
  ``--instances`` instances (cache lookup, ejected set, P2C pick), minus an empty await;
- ``resolve + started + finished``: the same plus the outcome reports the invoker makes
  around every call;
- ``balancer pick``: ``Balancer.pick`` alone.

    python -m bench.resolution_bench [--calls 200000] [--runs 5] [--instances 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import uvloop

from proxy.discovery.answer_cache import CachePolicy
from proxy.discovery.balanced_resolver import BalancedResolver
from proxy.discovery.balancer import Balancer
from proxy.discovery.registry import Endpoint
from proxy.discovery.source import Instances


class StaticSource:
    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints

    async def lookup(self, app_id: str, namespace: str) -> Instances:
        return Instances(self.endpoints, 3600.0)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def never(endpoint: Endpoint) -> bool:
    return False


async def nothing() -> None:
    pass


def per_call(seconds: list[float], calls: int) -> float:
    return statistics.median(seconds) / calls * 1e6


async def timed(body: Callable[[], Awaitable[None]], runs: int) -> list[float]:
    found = []
    for _ in range(runs):
        start = time.process_time()
        await body()
        found.append(time.process_time() - start)
    return found


async def measure(calls: int, runs: int, instances: int) -> None:
    endpoints = [Endpoint("198.18.0.1", 50002 + i) for i in range(instances)]
    resolver = BalancedResolver(
        StaticSource(endpoints),
        clock=time.monotonic,
        probe=never,
        cache=CachePolicy(ttl_ceiling=3600.0),
        probe_interval=None,
    )
    await resolver.resolve("orders", "default")  # the one lookup; every later call hits

    async def empty() -> None:
        for _ in range(calls):
            await nothing()

    async def resolve() -> None:
        for _ in range(calls):
            await resolver.resolve("orders", "default")

    async def reported() -> None:
        for _ in range(calls):
            endpoint = await resolver.resolve("orders", "default")
            resolver.started("orders", "default", endpoint)
            resolver.finished("orders", "default", endpoint, 0.002, True)

    balancer = Balancer(clock=time.monotonic, rng=random.Random(1))
    balancer.update(endpoints)
    skip: frozenset[Endpoint] = frozenset()

    async def pick() -> None:
        for _ in range(calls):
            balancer.pick(skip)

    base = per_call(await timed(empty, runs), calls)
    lines = [
        ("resolve (cache hit)", per_call(await timed(resolve, runs), calls) - base),
        ("resolve + started + finished", per_call(await timed(reported, runs), calls) - base),
        ("balancer pick", per_call(await timed(pick, runs), calls)),
    ]
    print(f"calls: {calls} x {runs} runs, {instances} instances, median")
    for name, micros in lines:
        print(f"{name + ':':30}{micros:6.2f} µs CPU per call")
    await resolver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args()
    uvloop.run(measure(args.calls, args.runs, args.instances))


if __name__ == "__main__":
    main()
