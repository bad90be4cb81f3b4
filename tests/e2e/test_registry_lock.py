"""A registry file locked by another process's writer must not stall a sidecar: its
heartbeat and lookups wait on SQLite in worker threads, calls go on from the
resolution cache, and the event loop never waits out SQLite's 5 s busy timeout
(measured by the sidecar's own tether_event_loop_lag_seconds)."""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.request

from tests.e2e.harness import Cluster, free_port, request

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: fast-heartbeat}
spec:
  nameResolution:
    component: sqlite
    configuration: {updateInterval: 1s}
"""
HOLD = 8.0  # seconds the registry stays locked: more than SQLite's 5 s busy timeout


def lag_samples(port: int) -> tuple[float, float]:
    """(samples of 2.5 s or less, all samples) of the loop-lag histogram."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    within = re.search(r'tether_event_loop_lag_seconds_bucket\{[^}]*le="2\.5"\} (\S+)', text)
    count = re.search(r"tether_event_loop_lag_seconds_count\{[^}]*\} (\S+)", text)
    assert within and count, text[:2000]
    return float(within.group(1)), float(count.group(1))


def test_a_locked_registry_stalls_neither_the_loop_nor_the_calls(cluster: Cluster) -> None:
    cluster.certs_init()
    config = cluster.root / "config.yaml"
    config.write_text(CONFIG)
    ports = {name: free_port() for name in ("orders", "checkout")}
    app = cluster.app("orders")
    sidecars = {
        name: cluster.sidecar(
            name,
            app if name == "orders" else None,
            extra=("--config", str(config), "--metrics-port", str(ports[name])),
        )
        for name in ports
    }
    checkout = sidecars["checkout"]
    assert request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/a", b"1").status == 200

    registry = sqlite3.connect(cluster.home / ".tether" / "registry.db", timeout=30)
    statuses = []
    try:
        registry.execute("BEGIN EXCLUSIVE")  # another writer holds the file
        until = time.monotonic() + HOLD
        while time.monotonic() < until:  # bounded: HOLD seconds of calls
            answer = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/b", b"2")
            statuses.append(answer.status)
            time.sleep(0.2)
    finally:
        registry.rollback()
        registry.close()

    assert statuses and set(statuses) == {200}, statuses
    for name, port in ports.items():
        within, count = lag_samples(port)
        # Before: each heartbeat held the loop for the busy timeout (a 5 s sample).
        assert count > 0 and within == count, (name, within, count)
    assert "registry heartbeat failed" in checkout.log() or "locked" in checkout.log()
