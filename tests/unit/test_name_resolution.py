from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy.discovery.registry import Endpoint, Registration, RegistryError, SqliteRegistry
from proxy.discovery.resolver import (
    RegistryHeartbeat,
    RegistryUnavailable,
    ResolveError,
    SqliteResolver,
)

A = Endpoint("127.0.0.1", 5001)
B = Endpoint("127.0.0.1", 5002)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeRegistry:
    def __init__(self, table: dict[tuple[str, str], list[Endpoint]]) -> None:
        self.table = table
        self.queries = 0
        self.fail = False

    def lookup(self, app_id: str, namespace: str) -> list[Endpoint]:
        self.queries += 1
        if self.fail:
            raise RegistryError("registry /x/registry.db: cannot look up: database is locked")
        return list(self.table.get((app_id, namespace), []))


def resolve(resolver: SqliteResolver, app_id: str = "orders", ns: str = "default") -> Endpoint:
    return asyncio.run(resolver.resolve(app_id, ns))


def test_cache_within_ttl_does_not_requery() -> None:
    clock = FakeClock()
    fake = FakeRegistry({("orders", "default"): [A]})
    resolver = SqliteResolver(fake, clock=clock, ttl=1.0)
    assert resolve(resolver) == A
    clock.now += 0.99
    assert resolve(resolver) == A
    assert fake.queries == 1
    fake.table[("orders", "default")] = [B]
    clock.now += 0.01
    assert resolve(resolver) == B
    assert fake.queries == 2


def test_round_robin_across_instances() -> None:
    clock = FakeClock()
    resolver = SqliteResolver(FakeRegistry({("orders", "default"): [A, B]}), clock=clock)
    assert [resolve(resolver) for _ in range(4)] == [A, B, A, B]
    clock.now += 5  # the rotation survives a refresh
    assert resolve(resolver) == A


def test_keys_are_per_app_and_namespace() -> None:
    fake = FakeRegistry({("orders", "default"): [A], ("orders", "prod"): [B]})
    resolver = SqliteResolver(fake, clock=FakeClock())
    assert resolve(resolver, "orders", "default") == A
    assert resolve(resolver, "orders", "prod") == B
    assert fake.queries == 2


def test_unknown_app_raises_fast_and_is_cached_for_the_ttl() -> None:
    clock = FakeClock()
    fake = FakeRegistry({})
    resolver = SqliteResolver(fake, clock=clock, ttl=1.0)
    for _ in range(3):
        with pytest.raises(ResolveError) as info:
            resolve(resolver)
        assert str(info.value) == "app id orders not found in namespace default"
    assert fake.queries == 1
    fake.table[("orders", "default")] = [A]
    clock.now += 1.0
    assert resolve(resolver) == A
    assert fake.queries == 2


def test_evict_removes_endpoint_until_refresh() -> None:
    clock = FakeClock()
    fake = FakeRegistry({("orders", "default"): [A, B]})
    resolver = SqliteResolver(fake, clock=clock)
    assert resolve(resolver) == A
    resolver.evict("orders", "default", A)
    assert [resolve(resolver) for _ in range(3)] == [B, B, B]
    resolver.evict("orders", "default", A)  # already gone: no error
    resolver.evict("billing", "default", A)  # never resolved: no error
    clock.now += 1.0
    assert {resolve(resolver), resolve(resolver)} == {A, B}


def test_evicting_the_last_endpoint_asks_the_registry_again() -> None:
    fake = FakeRegistry({("orders", "default"): [A]})
    resolver = SqliteResolver(fake, clock=FakeClock())
    assert resolve(resolver) == A
    resolver.evict("orders", "default", A)
    assert resolve(resolver) == A
    assert fake.queries == 2


def test_registry_failure_is_a_resolve_error() -> None:
    fake = FakeRegistry({})
    fake.fail = True
    resolver = SqliteResolver(fake, clock=FakeClock())
    with pytest.raises(RegistryUnavailable, match="database is locked") as info:
        resolve(resolver)
    assert isinstance(info.value, ResolveError)
    assert isinstance(info.value.__cause__, RegistryError)


def test_close_clears_the_cache() -> None:
    fake = FakeRegistry({("orders", "default"): [A]})
    resolver = SqliteResolver(fake, clock=FakeClock())
    resolve(resolver)
    asyncio.run(resolver.close())
    resolve(resolver)
    assert fake.queries == 2


def test_resolver_over_a_real_registry(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
    try:
        registry.register(Registration("r1", "orders", "default", A))
        resolver = SqliteResolver(registry, clock=time.monotonic)
        assert resolve(resolver) == A
    finally:
        registry.close()


def test_heartbeat_registers_and_deregisters(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
    registration = Registration("r1", "orders", "default", A)
    heartbeat = RegistryHeartbeat(registry, registration, interval=0.05)

    async def scenario() -> None:
        await heartbeat.start()
        assert registry.lookup("orders", "default") == [A]
        registry.deregister("r1")  # as if someone wiped our row
        await asyncio.sleep(0.2)
        assert registry.lookup("orders", "default") == [A]
        await heartbeat.stop()
        assert registry.lookup("orders", "default") == []
        assert registry.heartbeat("r1") is False
        await heartbeat.stop()  # idempotent

    try:
        asyncio.run(scenario())
    finally:
        registry.close()


def test_heartbeat_survives_registry_errors(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
    registration = Registration("r1", "orders", "default", A)
    heartbeat = RegistryHeartbeat(registry, registration, interval=0.02)
    calls = 0
    real_heartbeat = registry.heartbeat

    def flaky(registration_id: str) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RegistryError("registry x: cannot heartbeat: database is locked")
        return real_heartbeat(registration_id)

    registry.heartbeat = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        await heartbeat.start()
        await asyncio.sleep(0.15)
        await heartbeat.stop()

    try:
        asyncio.run(scenario())
        assert calls >= 2
    finally:
        registry.close()
