"""Two instances of one app ID share the calls; a stopped one leaves the registry."""

from __future__ import annotations

import time

from proxy.discovery.registry import SqliteRegistry
from tests.e2e.harness import Cluster, request, wait_until


def test_two_instances_both_receive_calls(cluster: Cluster) -> None:
    cluster.certs_init()
    first_app, second_app = cluster.app("orders-1"), cluster.app("orders-2")
    cluster.sidecar("orders", first_app)
    second = cluster.sidecar("orders", second_app)
    checkout = cluster.sidecar("checkout")
    for _ in range(40):
        assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/share").status == 200
    first_count, second_count = len(first_app.received()), len(second_app.received())
    assert first_count + second_count == 40
    assert first_count > 0 and second_count > 0
    # A cleanly stopped instance deregisters: every later call goes to the other one.
    cluster.stop(second.process)
    registry = SqliteRegistry(cluster.home / ".tether" / "registry.db", clock=time.time)
    try:
        wait_until(
            lambda: len(registry.lookup("orders", "default")) == 1,
            "the stopped instance leaves the registry",
        )
    finally:
        registry.close()
    # The caller may still hold the old list for its cache's lifetime (1 s); a call
    # that picks the stopped instance fails to connect, which evicts it and is
    # retried (Dapr's built-in service retries), so every call still lands on the first.
    for _ in range(10):
        assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/after").status == 200
    assert len(second_app.received()) == second_count
    assert len(first_app.received()) == first_count + 10
