"""Name resolution: the BalancedResolver over a fake InstanceSource and a fake clock
(cache, stale answers, negative answers, one refresh in flight, balancing, ejection and
probing), the SQLite source over a real registry, and the registry heartbeat."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import pytest

from proxy.discovery.answer_cache import CachePolicy
from proxy.discovery.balanced_resolver import BalancedResolver
from proxy.discovery.outlier import OutlierPolicy
from proxy.discovery.registry import Endpoint, Registration, RegistryError, SqliteRegistry
from proxy.discovery.resolver import (
    AppNotFoundError,
    RegistryHeartbeat,
    RegistryUnavailable,
    ResolveError,
)
from proxy.discovery.source import AppNotFound, Instances, SourceUnavailable
from proxy.discovery.sqlite_source import SqliteSource

A = Endpoint("127.0.0.1", 5001)
B = Endpoint("127.0.0.1", 5002)
C = Endpoint("127.0.0.1", 5003)
T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """Answers from a table; ``fail`` makes lookups unavailable; ``gate`` holds them."""

    def __init__(self, table: dict[tuple[str, str], list[Endpoint]], ttl: float = 5.0) -> None:
        self.table = table
        self.ttl = ttl
        self.queries = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def lookup(self, app_id: str, namespace: str) -> Instances:
        self.queries += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise SourceUnavailable("dns server 198.18.0.1:53 did not answer")
        found = self.table.get((app_id, namespace))
        if found is None:
            raise AppNotFound(f"{app_id}.{namespace}.example does not exist (NXDOMAIN)", 30.0)
        return Instances(list(found), self.ttl)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class FakeProbe:
    def __init__(self) -> None:
        self.up: set[Endpoint] = set()
        self.probed: list[Endpoint] = []

    async def __call__(self, endpoint: Endpoint) -> bool:
        self.probed.append(endpoint)
        return endpoint in self.up


def make(
    source: FakeSource,
    clock: FakeClock,
    probe: FakeProbe | None = None,
    **outlier: float,
) -> BalancedResolver:
    return BalancedResolver(
        source,
        clock=clock,
        probe=probe or FakeProbe(),
        cache=CachePolicy(stale_window=60.0),
        outlier=OutlierPolicy(**outlier),  # type: ignore[arg-type]
        rng=random.Random(3),
        probe_interval=None,
    )


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


async def settle() -> None:
    """Let background refreshes (which finish without waiting on anything) run."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_fresh_answers_come_from_the_cache_and_spread_over_instances() -> None:
    source = FakeSource({("orders", "default"): [A, B]})
    resolver = make(source, FakeClock())

    async def scenario() -> set[Endpoint]:
        return {await resolver.resolve("orders", "default") for _ in range(40)}

    assert run(scenario) == {A, B}
    assert source.queries == 1


def test_namespaces_are_separate_keys() -> None:
    source = FakeSource({("orders", "default"): [A], ("orders", "prod"): [B]})
    resolver = make(source, FakeClock())

    async def scenario() -> tuple[Endpoint, Endpoint]:
        return await resolver.resolve("orders", "default"), await resolver.resolve("orders", "prod")

    assert run(scenario) == (A, B)


def test_many_apps_keep_at_most_the_cache_bound_of_state() -> None:
    apps = [f"app{index}" for index in range(20)]
    source = FakeSource({(app, "default"): [A, B] for app in apps})
    resolver = BalancedResolver(
        source,
        clock=FakeClock(),
        probe=FakeProbe(),
        cache=CachePolicy(max_answers=4),
        rng=random.Random(3),
        probe_interval=None,
    )

    async def scenario() -> Endpoint:
        for app in apps:
            await resolver.resolve(app, "default")
        return await resolver.resolve("app19", "default")

    assert run(scenario) in (A, B)
    # Balancing and ejection state only for the answers the cache still holds.
    assert len(resolver._apps) <= 5 and len(resolver._cache) <= 4


def test_an_expired_answer_is_used_while_one_background_refresh_runs() -> None:
    clock = FakeClock()
    source = FakeSource({("orders", "default"): [A]})
    resolver = make(source, clock)

    async def scenario() -> list[Endpoint]:
        await resolver.resolve("orders", "default")
        source.table[("orders", "default")] = [B]
        source.gate = asyncio.Event()
        clock.now += 6
        first = [await resolver.resolve("orders", "default") for _ in range(5)]
        await settle()
        first += [await resolver.resolve("orders", "default") for _ in range(5)]
        assert source.queries == 2  # one refresh for five calls
        source.gate.set()
        await settle()
        return [*first, await resolver.resolve("orders", "default")]

    assert run(scenario) == [A] * 10 + [B]


def test_first_callers_wait_for_one_lookup() -> None:
    source = FakeSource({("orders", "default"): [A]})
    resolver = make(source, FakeClock())

    async def scenario() -> list[Endpoint]:
        source.gate = asyncio.Event()
        calls = [asyncio.create_task(resolver.resolve("orders", "default")) for _ in range(5)]
        await settle()
        source.gate.set()
        return list(await asyncio.gather(*calls))

    assert run(scenario) == [A] * 5
    assert source.queries == 1


def test_a_cancelled_waiter_does_not_cancel_the_lookup() -> None:
    source = FakeSource({("orders", "default"): [A]})
    resolver = make(source, FakeClock())

    async def scenario() -> Endpoint:
        source.gate = asyncio.Event()
        first = asyncio.create_task(resolver.resolve("orders", "default"))
        second = asyncio.create_task(resolver.resolve("orders", "default"))
        await settle()
        first.cancel()
        source.gate.set()
        return await second

    assert run(scenario) == A
    assert source.queries == 1


def test_an_unknown_app_fails_at_once_with_the_sources_reason_and_is_cached() -> None:
    clock = FakeClock()
    source = FakeSource({})
    resolver = make(source, clock)

    async def scenario() -> None:
        with pytest.raises(AppNotFoundError, match="NXDOMAIN") as info:
            await resolver.resolve("orders", "default")
        assert str(info.value).startswith("app id orders not found in namespace default")
        with pytest.raises(AppNotFoundError):
            await resolver.resolve("orders", "default")
        assert source.queries == 1  # negative answer cached
        clock.now += 5  # the negative TTL is capped at 5 s
        source.table[("orders", "default")] = [A]
        assert await resolver.resolve("orders", "default") == A

    run(scenario)


def test_stale_answers_are_served_within_the_window_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    source = FakeSource({("orders", "default"): [A]})
    resolver = make(source, clock)
    caplog.set_level(logging.INFO, "tether.resolve")

    async def scenario() -> None:
        await resolver.resolve("orders", "default")
        source.fail = True
        for _ in range(50):  # 50 s of failing refreshes
            clock.now += 1
            assert await resolver.resolve("orders", "default") == A
            await settle()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "using the last answer" in warnings[0].getMessage()
        clock.now += 16  # past the 60 s window from the first failure
        await settle()
        await resolver.resolve("orders", "default")  # hands out a refresh, which fails

    with pytest.raises(RegistryUnavailable, match="did not answer"):
        run(scenario)
    assert source.queries > 2
    assert source.queries < 30  # refreshes back off while failing


def test_recovery_after_an_outage_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    source = FakeSource({("orders", "default"): [A]})
    resolver = make(source, clock)
    caplog.set_level(logging.INFO, "tether.resolve")

    async def scenario() -> None:
        await resolver.resolve("orders", "default")
        source.fail = True
        clock.now += 6
        await resolver.resolve("orders", "default")
        await settle()
        source.fail = False
        clock.now += 2
        await resolver.resolve("orders", "default")
        await settle()

    run(scenario)
    assert "works again" in caplog.text


def test_a_source_failure_with_nothing_cached_fails_the_call() -> None:
    source = FakeSource({("orders", "default"): [A]})
    source.fail = True
    resolver = make(source, FakeClock())

    async def scenario() -> None:
        with pytest.raises(RegistryUnavailable, match="did not answer") as info:
            await resolver.resolve("orders", "default")
        assert isinstance(info.value, ResolveError)
        assert not isinstance(info.value, AppNotFoundError)
        # Within the retry delay the next call fails without asking again.
        with pytest.raises(RegistryUnavailable, match="lookups are failing"):
            await resolver.resolve("orders", "default")
        assert source.queries == 1

    run(scenario)


def test_connection_failures_eject_and_the_pick_skips_the_instance() -> None:
    clock = FakeClock()
    source = FakeSource({("orders", "default"): [A, B]})
    resolver = make(source, clock, consecutive_failures=3)

    async def scenario() -> set[Endpoint]:
        await resolver.resolve("orders", "default")
        for _ in range(3):
            resolver.started("orders", "default", A)
            resolver.finished("orders", "default", A, 0.001, False)
        return {await resolver.resolve("orders", "default") for _ in range(30)}

    assert run(scenario) == {B}


def test_evict_counts_as_a_connection_failure() -> None:
    source = FakeSource({("orders", "default"): [A, B]})
    resolver = make(source, FakeClock(), consecutive_failures=2)

    async def scenario() -> set[Endpoint]:
        await resolver.resolve("orders", "default")
        resolver.evict("orders", "default", A)
        resolver.evict("orders", "default", A)
        resolver.evict("billing", "default", A)  # never resolved: ignored
        return {await resolver.resolve("orders", "default") for _ in range(30)}

    assert run(scenario) == {B}


def test_a_probe_brings_an_ejected_instance_back_without_a_real_call() -> None:
    clock = FakeClock()
    probe = FakeProbe()
    source = FakeSource({("orders", "default"): [A, B]}, ttl=1000)
    resolver = make(source, clock, probe, consecutive_failures=1, base_ejection_time=10)

    async def scenario() -> None:
        await resolver.resolve("orders", "default")
        resolver.finished("orders", "default", A, 0.001, False)
        assert await resolver.probe_due() == 0  # still within its ejection time
        clock.now += 10
        assert await resolver.probe_due() == 1  # A is down: ejected again, for longer
        assert {await resolver.resolve("orders", "default") for _ in range(20)} == {B}
        clock.now += 10
        assert await resolver.probe_due() == 0  # second ejection lasts 20 s
        clock.now += 10
        probe.up.add(A)
        assert await resolver.probe_due() == 1
        assert {await resolver.resolve("orders", "default") for _ in range(40)} == {A, B}

    run(scenario)
    assert probe.probed == [A, A]


def test_the_background_prober_runs_while_something_is_ejected() -> None:
    probe = FakeProbe()
    probe.up.add(A)
    source = FakeSource({("orders", "default"): [A, B]}, ttl=1000)
    resolver = BalancedResolver(
        source,
        clock=time.monotonic,
        probe=probe,
        outlier=OutlierPolicy(consecutive_failures=1, base_ejection_time=0.01),
        probe_interval=0.01,
    )

    async def scenario() -> None:
        await resolver.resolve("orders", "default")
        resolver.finished("orders", "default", A, 0.001, False)
        async with asyncio.timeout(10):
            while not probe.probed:
                await asyncio.sleep(0.01)
        await resolver.close()

    run(scenario)
    assert probe.probed[0] == A


def test_an_instance_missing_from_a_new_answer_stops_getting_calls() -> None:
    clock = FakeClock()
    source = FakeSource({("orders", "default"): [A, B]})
    resolver = make(source, clock)

    async def scenario() -> set[Endpoint]:
        await resolver.resolve("orders", "default")
        source.table[("orders", "default")] = [B, C]
        clock.now += 6
        await resolver.resolve("orders", "default")  # starts the refresh
        await settle()
        return {await resolver.resolve("orders", "default") for _ in range(40)}

    assert run(scenario) == {B, C}


def test_close_stops_refreshes() -> None:
    source = FakeSource({("orders", "default"): [A]})
    resolver = make(source, FakeClock())

    async def scenario() -> None:
        source.gate = asyncio.Event()
        call = asyncio.create_task(resolver.resolve("orders", "default"))
        await settle()
        await resolver.close()
        with pytest.raises(asyncio.CancelledError):
            await call

    run(scenario)


def test_sqlite_source_over_a_real_registry(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
    try:
        registry.register(Registration("r1", "orders", "default", A))
        registry.register(Registration("r2", "orders", "default", B))
        resolver = BalancedResolver(
            SqliteSource(registry, None), clock=time.monotonic, probe=FakeProbe()
        )

        async def scenario() -> set[Endpoint]:
            found = {await resolver.resolve("orders", "default") for _ in range(40)}
            with pytest.raises(AppNotFoundError):
                await resolver.resolve("billing", "default")
            await resolver.close()
            return found

        assert run(scenario) == {A, B}
    finally:
        registry.close()


def test_sqlite_source_reports_a_broken_registry_as_unavailable(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)

    def locked(app_id: str, namespace: str) -> list[Endpoint]:
        raise RegistryError("registry x: cannot look up: database is locked")

    registry.lookup = locked  # type: ignore[method-assign]
    resolver = BalancedResolver(
        SqliteSource(registry, None), clock=time.monotonic, probe=FakeProbe()
    )
    try:
        with pytest.raises(RegistryUnavailable, match="database is locked"):
            run(lambda: resolver.resolve("orders", "default"))
    finally:
        registry.close()


def test_sqlite_source_start_and_close_run_the_heartbeat(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
    heartbeat = RegistryHeartbeat(registry, Registration("r1", "orders", "default", A), 60)
    source = SqliteSource(registry, heartbeat)

    async def scenario() -> None:
        await source.start()
        assert registry.lookup("orders", "default") == [A]
        await source.close()
        assert registry.lookup("orders", "default") == []

    try:
        run(scenario)
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


def test_registry_io_of_the_heartbeat_runs_off_the_event_loop(tmp_path: Path) -> None:
    """A registry locked by another process's writer blocks SQLite for its busy timeout:
    that wait must happen in a worker thread, never on the loop's thread."""

    class Recording(SqliteRegistry):
        threads: ClassVar[set[int]] = set()
        beats = 0

        def register(self, reg: Registration) -> None:
            self.threads.add(threading.get_ident())
            super().register(reg)

        def heartbeat(self, registration_id: str) -> bool:
            self.threads.add(threading.get_ident())
            Recording.beats += 1
            return super().heartbeat(registration_id)

        def deregister(self, registration_id: str) -> None:
            self.threads.add(threading.get_ident())
            super().deregister(registration_id)

    registry = Recording(tmp_path / "registry.db", clock=time.time)
    heartbeat = RegistryHeartbeat(registry, Registration("r1", "orders", "default", A), 0.01)

    async def scenario() -> int:
        await heartbeat.start()
        for _ in range(500):  # bounded: until a beat has run
            await asyncio.sleep(0.01)
            if Recording.beats:
                break
        await heartbeat.stop()
        return threading.get_ident()

    try:
        loop_thread = run(scenario)
    finally:
        registry.close()
    assert Recording.beats and loop_thread not in Recording.threads
