"""Two instances of one app ID share the calls; a stopped one leaves the registry."""

from __future__ import annotations

import time

from tests.e2e.harness import Cluster, request


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
    time.sleep(1.5)  # past the resolver's 1 s cache, so the registry is read again
    for _ in range(10):
        assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/after").status == 200
    assert len(second_app.received()) == second_count
    assert len(first_app.received()) == first_count + 10
