"""--max-connections: at the cap an idle keep-alive connection is closed so a new
client is still served (as nginx reclaims them); with none idle, the new one is refused
and the rest keep working."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Cluster, Sidecar, wait_until

HEALTHZ = b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
CAP = 5


@pytest.fixture
def sidecar(cluster: Cluster) -> Sidecar:
    return cluster.sidecar("orders", mtls=False, extra=("--max-connections", str(CAP)))


def healthz_on(sock: socket.socket) -> bytes:
    sock.sendall(HEALTHZ)
    return sock.recv(65536)


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.2)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@contextlib.contextmanager
def connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    opened = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_an_idle_keep_alive_connection_makes_room(sidecar: Sidecar) -> None:
    with connections(sidecar.http_port, CAP) as idle:
        for sock in idle:
            assert healthz_on(sock).startswith(b"HTTP/1.1 204 ")  # then kept alive, idle
        with connections(sidecar.http_port, 1) as (newcomer,):
            assert healthz_on(newcomer).startswith(b"HTTP/1.1 204 ")
            wait_until(
                lambda: sum(closed_by_server(sock) for sock in idle) == 1,
                "exactly one idle connection closed for the newcomer",
            )


def test_with_every_connection_busy_a_new_one_is_refused(sidecar: Sidecar) -> None:
    with connections(sidecar.http_port, CAP) as busy:
        for sock in busy:
            sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\n")  # a head in progress: not idle
        wait_until(
            lambda: (
                "refused a connection: all 5 are busy" in sidecar.log()
                or not try_one(sidecar.http_port)
            ),
            "a connection over the cap refused",
        )
        assert "refused a connection: all 5 are busy" in sidecar.log()
        # The busy ones are still served.
        busy[0].sendall(b"Host: x\r\n\r\n")
        assert busy[0].recv(65536).startswith(b"HTTP/1.1 204 ")


def try_one(port: int) -> bool:
    """Whether a new connection gets an answer (False when the server closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            return healthz_on(sock).startswith(b"HTTP/1.1 ")
        except OSError:
            return False
