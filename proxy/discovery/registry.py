"""The embedded SQLite registry: standalone name resolution.

Sidecars on one machine register their internal gRPC endpoint in a shared SQLite
file and look each other up by app ID. The table layout is the one of Dapr's
sqlite name resolver, plus a namespace filter that Dapr does not apply.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.core.errors import TetherError

_INIT_ATTEMPTS = 100  # x 50 ms

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hosts (
        registration_id TEXT PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        app_id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        last_update INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS hosts_app_id_namespace ON hosts (app_id, namespace)",
)

# Rows this many stale periods old belong to sidecars that died without deregistering.
_REMOVE_AFTER_PERIODS = 4


class RegistryError(TetherError):
    """The registry file could not be opened, read or written."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def address(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        """Parse ``host:port`` or ``[v6host]:port``; raises ValueError."""
        host, sep, port_text = address.rpartition(":")
        if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"{address!r} is not host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"{address!r}: an IPv6 host must be in brackets")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"{address!r}: port out of range")
        return cls(host, port)


@dataclass(frozen=True)
class Registration:
    registration_id: str
    app_id: str
    namespace: str
    endpoint: Endpoint


def default_registry_path() -> Path:
    return Path.home() / ".tether" / "registry.db"


class SqliteRegistry:
    """Registrations in one SQLite file shared by every sidecar on the machine.

    ``clock`` returns wall-clock seconds: timestamps are compared across processes,
    so a monotonic clock would not do.
    """

    def __init__(
        self, path: Path, *, clock: Callable[[], float], stale_after: float = 15.0
    ) -> None:
        self.path = path.expanduser()
        self._clock = clock
        self._stale_after = stale_after
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create the registry {self.path}: {exc}") from exc
        try:
            # Autocommit: every statement below is a single atomic statement.
            self._db = sqlite3.connect(
                self.path, timeout=5, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the registry {self.path}: {exc}") from exc
        # Sidecars started together race to create the file; switching it to WAL
        # answers "database is locked" at once instead of waiting on the busy
        # timeout, so the set-up is retried for a bounded time.
        for attempt in range(_INIT_ATTEMPTS):
            try:
                # WAL lets readers in other sidecars proceed while one of them writes.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA busy_timeout=5000")
                for statement in _SCHEMA:
                    self._db.execute(statement)
                break
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and attempt + 1 < _INIT_ATTEMPTS:
                    time.sleep(0.05)
                    continue
                self._db.close()
                raise RegistryError(f"cannot initialise the registry {self.path}: {exc}") from exc
            except sqlite3.Error as exc:
                self._db.close()
                raise RegistryError(f"cannot initialise the registry {self.path}: {exc}") from exc

    def _now(self) -> int:
        # Whole seconds, like Dapr's unixepoch() column.
        return int(self._clock())

    def _execute(
        self, what: str, sql: str, params: tuple[object, ...]
    ) -> tuple[list[tuple[object, ...]], int]:
        """The statement's rows and row count. One statement at a time: lookups and the
        heartbeat run in worker threads and share this connection."""
        try:
            with self._lock:
                cursor = self._db.execute(sql, params)
                return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            raise RegistryError(f"registry {self.path}: cannot {what}: {exc}") from exc

    def register(self, reg: Registration) -> None:
        # REPLACE also drops a row holding the same address under another ID: a
        # restarted sidecar that got the same port must not leave its ghost behind.
        self._execute(
            "register",
            "INSERT OR REPLACE INTO hosts"
            " (registration_id, address, app_id, namespace, last_update)"
            " VALUES (?, ?, ?, ?, ?)",
            (reg.registration_id, reg.endpoint.address, reg.app_id, reg.namespace, self._now()),
        )

    def heartbeat(self, registration_id: str) -> bool:
        """Refresh a registration; False if its row is gone and must be re-registered."""
        _, count = self._execute(
            "heartbeat",
            "UPDATE hosts SET last_update = ? WHERE registration_id = ?",
            (self._now(), registration_id),
        )
        return count > 0

    def deregister(self, registration_id: str) -> None:
        self._execute(
            "deregister", "DELETE FROM hosts WHERE registration_id = ?", (registration_id,)
        )

    def lookup(self, app_id: str, namespace: str) -> list[Endpoint]:
        rows, _ = self._execute(
            "look up",
            "SELECT address FROM hosts WHERE app_id = ? AND namespace = ? AND last_update >= ?"
            " ORDER BY address",
            (app_id, namespace, self._clock() - self._stale_after),
        )
        endpoints: list[Endpoint] = []
        for (address,) in rows:
            # Another writer of the shared file may have stored something odd;
            # one bad row must not hide the good ones.
            try:
                endpoints.append(Endpoint.parse(str(address)))
            except ValueError:
                continue
        return endpoints

    def remove_stale(self) -> int:
        """Delete rows of sidecars that stopped heartbeating long ago; returns the count."""
        cutoff = self._clock() - self._stale_after * _REMOVE_AFTER_PERIODS
        _, count = self._execute(
            "remove stale rows", "DELETE FROM hosts WHERE last_update < ?", (cutoff,)
        )
        return count

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot close the registry {self.path}: {exc}") from exc
