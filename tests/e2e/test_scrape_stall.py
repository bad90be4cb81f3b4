"""Back-to-back scrapes of a full metrics registry (every series cap reached: a 5 MB
exposition that takes most of a second to build) must not stall the sidecar's calls:
the exposition is built in a worker thread, so the event loop stays free (measured by
the sidecar's own tether_event_loop_lag_seconds)."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

from tests.e2e.harness import Cluster, free_port, request

SCRAPING = 6.0  # seconds of back-to-back scrapes


def scrape(port: int, gzip: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    wanted = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(wanted, timeout=30) as answer:
        return bytes(answer.read())


def slow_lag_samples(text: str) -> float:
    """Loop-lag samples over 0.5 s."""
    within = re.search(r'tether_event_loop_lag_seconds_bucket\{[^}]*le="0\.5"\} (\S+)', text)
    count = re.search(r"tether_event_loop_lag_seconds_count\{[^}]*\} (\S+)", text)
    assert within and count, text[:2000]
    return float(count.group(1)) - float(within.group(1))


def test_scrapes_of_a_full_registry_do_not_stall_calls(cluster: Cluster) -> None:
    cluster.certs_init()
    metrics_port = free_port()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout", extra=("--metrics-port", str(metrics_port)))
    for index in range(1100):  # a distinct path each: every per-path family reaches its cap
        answer = request(checkout.http_port, "GET", f"/v1.0/invoke/orders/method/item/{index}")
        assert answer.status == 200
    full = scrape(metrics_port)
    assert len(full) > 3_000_000 and b"_overflow" in full
    # Prometheus asks for gzip: what goes over the wire stays small.
    assert len(scrape(metrics_port, gzip=True)) < len(full) // 10
    before = slow_lag_samples(full.decode())

    stop = threading.Event()
    scrapes = 0

    def scrape_on() -> None:
        nonlocal scrapes
        while not stop.is_set():
            scrape(metrics_port)
            scrapes += 1

    scrapers = [threading.Thread(target=scrape_on) for _ in range(2)]
    for thread in scrapers:
        thread.start()
    statuses = []
    try:
        until = time.monotonic() + SCRAPING
        while time.monotonic() < until:  # bounded: SCRAPING seconds of calls
            statuses.append(
                request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/x").status
            )
    finally:
        stop.set()
        for thread in scrapers:
            thread.join(60)
    assert scrapes >= 2 and set(statuses) == {200}
    # Built on the loop, each scrape held it most of a second: a slow sample per scrape.
    # In a thread the loop keeps its pace (one stray slow sample tolerated on a busy box).
    assert slow_lag_samples(scrape(metrics_port).decode()) - before <= 1
