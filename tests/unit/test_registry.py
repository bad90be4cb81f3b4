from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.discovery.registry import (
    Endpoint,
    Registration,
    RegistryError,
    SqliteRegistry,
    default_registry_path,
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reg(rid: str, app_id: str, port: int, namespace: str = "default") -> Registration:
    return Registration(rid, app_id, namespace, Endpoint("127.0.0.1", port))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteRegistry]:
    r = SqliteRegistry(tmp_path / "nested" / "registry.db", clock=clock)
    yield r
    r.close()


def test_endpoint_address_and_parse() -> None:
    assert Endpoint("10.0.0.1", 50002).address == "10.0.0.1:50002"
    assert Endpoint("::1", 50002).address == "[::1]:50002"
    assert Endpoint.parse("[::1]:50002") == Endpoint("::1", 50002)
    assert Endpoint.parse("host.local:1") == Endpoint("host.local", 1)
    for bad in ("nohost", ":80", "h:", "h:x", "::1:80", "h:70000"):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)


def test_default_path() -> None:
    assert default_registry_path() == Path.home() / ".tether" / "registry.db"


def test_register_and_lookup(registry: SqliteRegistry) -> None:
    registry.register(reg("a", "orders", 5001))
    assert registry.lookup("orders", "default") == [Endpoint("127.0.0.1", 5001)]
    assert registry.lookup("billing", "default") == []


def test_namespace_isolation(registry: SqliteRegistry) -> None:
    registry.register(reg("a", "orders", 5001, namespace="prod"))
    registry.register(reg("b", "orders", 5002, namespace="test"))
    assert registry.lookup("orders", "prod") == [Endpoint("127.0.0.1", 5001)]
    assert registry.lookup("orders", "test") == [Endpoint("127.0.0.1", 5002)]
    assert registry.lookup("orders", "default") == []


def test_stale_rows_ignored_and_heartbeat_refreshes(
    registry: SqliteRegistry, clock: FakeClock
) -> None:
    registry.register(reg("a", "orders", 5001))
    registry.register(reg("b", "orders", 5002))
    clock.now += 10
    assert registry.heartbeat("b") is True
    clock.now += 10  # a: 20 s old (stale), b: 10 s old
    assert registry.lookup("orders", "default") == [Endpoint("127.0.0.1", 5002)]
    assert registry.heartbeat("a") is True
    assert len(registry.lookup("orders", "default")) == 2


def test_remove_stale_deletes_only_long_dead_rows(
    registry: SqliteRegistry, clock: FakeClock
) -> None:
    registry.register(reg("a", "orders", 5001))
    clock.now += 30
    registry.register(reg("b", "orders", 5002))
    assert registry.remove_stale() == 0
    clock.now += 31  # a: 61 s old > 4 x 15 s; b: 31 s old
    assert registry.remove_stale() == 1
    assert registry.heartbeat("a") is False
    assert registry.heartbeat("b") is True


def test_heartbeat_false_after_deregister(registry: SqliteRegistry) -> None:
    registry.register(reg("a", "orders", 5001))
    registry.deregister("a")
    assert registry.heartbeat("a") is False
    assert registry.lookup("orders", "default") == []
    registry.deregister("a")  # idempotent


def test_reregister_same_address_replaces_old_row(registry: SqliteRegistry) -> None:
    registry.register(reg("old", "orders", 5001))
    registry.register(reg("new", "payments", 5001))
    assert registry.lookup("orders", "default") == []
    assert registry.lookup("payments", "default") == [Endpoint("127.0.0.1", 5001)]
    assert registry.heartbeat("old") is False


def test_register_is_an_upsert(registry: SqliteRegistry) -> None:
    registry.register(reg("a", "orders", 5001))
    registry.register(reg("a", "orders", 5009))
    assert registry.lookup("orders", "default") == [Endpoint("127.0.0.1", 5009)]


def test_two_instances_both_returned_in_stable_order(registry: SqliteRegistry) -> None:
    registry.register(reg("z", "orders", 5002))
    registry.register(reg("y", "orders", 5001))
    expected = [Endpoint("127.0.0.1", 5001), Endpoint("127.0.0.1", 5002)]
    assert registry.lookup("orders", "default") == expected
    assert registry.lookup("orders", "default") == expected


def test_two_registries_share_one_file(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.db"
    first = SqliteRegistry(path, clock=clock)
    second = SqliteRegistry(path, clock=clock)
    try:
        first.register(reg("a", "orders", 5001))
        second.register(reg("b", "billing", 5002))
        assert second.lookup("orders", "default") == [Endpoint("127.0.0.1", 5001)]
        assert first.lookup("billing", "default") == [Endpoint("127.0.0.1", 5002)]
        second.deregister("a")
        assert first.heartbeat("a") is False
    finally:
        first.close()
        second.close()


def test_bad_rows_from_other_writers_are_skipped(registry: SqliteRegistry) -> None:
    registry.register(reg("a", "orders", 5001))
    registry._db.execute(
        "INSERT INTO hosts VALUES ('x', 'garbage', 'orders', 'default', ?)", (2_000_000_000,)
    )
    assert registry.lookup("orders", "default") == [Endpoint("127.0.0.1", 5001)]


def test_unwritable_parent_raises_registry_error(tmp_path: Path, clock: FakeClock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RegistryError, match=r"registry\.db"):
        SqliteRegistry(blocker / "registry.db", clock=clock)


def test_unopenable_file_raises_registry_error(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "registry.db"
    directory.mkdir()
    with pytest.raises(RegistryError, match=r"registry\.db") as info:
        SqliteRegistry(directory, clock=clock)
    assert info.value.__cause__ is not None


def test_use_after_close_raises_registry_error(tmp_path: Path, clock: FakeClock) -> None:
    registry = SqliteRegistry(tmp_path / "r.db", clock=clock)
    registry.close()
    with pytest.raises(RegistryError, match=r"r\.db"):
        registry.lookup("orders", "default")


def test_many_registries_created_at_once_on_a_new_file(tmp_path: Path) -> None:
    """Sidecars started together race to create the file (WAL switch answers 'locked')."""
    import threading

    path = tmp_path / "race" / "registry.db"
    errors: list[Exception] = []

    def open_one() -> None:
        try:
            SqliteRegistry(path, clock=lambda: 1000.0).close()
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
