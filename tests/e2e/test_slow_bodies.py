"""Clients that send a request body too slowly get a 408 and a closed connection:
one that stops sending (--body-read-timeout) and one that trickles a byte now and
then to dodge that (--min-body-rate, after a 5 s grace), for bodies read whole before
forwarding and for bodies streamed to the app."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import App, Cluster, Sidecar

INVOKE = b"/v1.0/invoke/orders/method/slow"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Sidecar]]:
    cluster = Cluster(tmp_path_factory.mktemp("slow-bodies"))
    try:
        cluster.certs_init()
        app = cluster.app("orders")
        cluster.sidecar("orders", app, extra=("--max-body-size", "16Mi"))
        checkout = cluster.sidecar(
            "checkout",
            extra=("--max-body-size", "16Mi", "--body-read-timeout", "2s"),
        )
        yield app, checkout
    finally:
        cluster.stop_all()


def head(length: int) -> bytes:
    return (
        b"POST "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(length).encode()
        + b"\r\n\r\n"
    )


def answer_after(sock: socket.socket, trickle: bool, limit: float = 40.0) -> tuple[bytes, bool]:
    """Send a byte a second while ``trickle``; return what came back and whether it closed."""
    deadline = time.monotonic() + limit  # bounded: the rules answer well before this
    received = b""
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        if trickle:
            with contextlib.suppress(OSError):  # closed under us: read what it said
                sock.sendall(b"a")
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            return received, True
        received += data
    return received, False


@pytest.mark.parametrize("length", [1000, 6 * 1024 * 1024], ids=["buffered", "streamed"])
def test_a_body_that_stops_coming_gets_408(pair: tuple[App, Sidecar], length: int) -> None:
    app, checkout = pair
    with socket.create_connection(("127.0.0.1", checkout.http_port)) as sock:
        sock.sendall(head(length) + b"a" * min(length // 2, 64 * 1024))
        reply, closed = answer_after(sock, trickle=False)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:300]
    assert b"no request body bytes for 2s" in reply
    assert closed
    if length == 1000:  # read whole before forwarding: the app saw nothing
        assert not [e for e in app.received() if e["path"] == "/slow"]


@pytest.mark.parametrize("length", [1000, 6 * 1024 * 1024], ids=["buffered", "streamed"])
def test_a_trickled_body_gets_408_after_the_grace_period(
    pair: tuple[App, Sidecar], length: int
) -> None:
    _, checkout = pair
    with socket.create_connection(("127.0.0.1", checkout.http_port)) as sock:
        sock.sendall(head(length) + (b"a" * 64 * 1024 if length > 1000 else b""))
        reply, closed = answer_after(sock, trickle=True)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:300]
    assert b"under the minimum of 240 bytes/s" in reply
    assert closed


def test_many_trickling_clients_are_all_dropped_and_others_served(
    pair: tuple[App, Sidecar],
) -> None:
    _, checkout = pair
    results: list[tuple[bytes, bool]] = []

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", checkout.http_port)) as sock:
            sock.sendall(head(1000))
            results.append(answer_after(sock, trickle=True))

    threads = [threading.Thread(target=trickle) for _ in range(20)]
    for thread in threads:
        thread.start()
    with socket.create_connection(("127.0.0.1", checkout.http_port), timeout=30) as sock:
        sock.sendall(head(2) + b"{}")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    for thread in threads:
        thread.join(60)
    assert len(results) == 20
    assert all(reply.startswith(b"HTTP/1.1 408 ") and closed for reply, closed in results)
