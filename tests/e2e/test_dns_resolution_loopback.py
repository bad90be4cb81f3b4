"""The ``dns`` resolver end to end on loopback: real tether sidecars find two instances of
an app through SRV records served by a real dnsmasq, share calls between them, route
around one killed with SIGKILL, fail an unknown app at once with Dapr's error, and
export the resolution metrics. (Scenarios across network namespaces are in
test_discovery_*.py.)"""

from __future__ import annotations

from pathlib import Path

from proxy.discovery.dns_names import srv_name
from tests.e2e.dnsmasq import Dnsmasq, Srv
from tests.e2e.harness import Cluster, free_port, request

ORDERS = "orders.default.test"


def configuration(path: Path, nameserver: str) -> Path:
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: dns\nspec:\n"
        "  nameResolution:\n    component: dns\n    configuration:\n"
        '      name: "{appid}.{namespace}.test"\n'
        f'      nameservers: ["{nameserver}"]\n'
        "      ejection: {consecutiveFailures: 1}\n"
        "      connectTimeout: 1s\n"
    )
    return path


def test_srv_instances_share_calls_and_a_killed_one_is_routed_around(
    cluster: Cluster, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    with Dnsmasq(
        tmp_path / "dns",
        ttl=1,
        zones=("test",),
        hosts={"o1.test": ["127.0.0.1"], "o2.test": ["127.0.0.1"]},
        srv=[
            Srv(srv_name(ORDERS), "o1.test", ports[0]),
            Srv(srv_name(ORDERS), "o2.test", ports[1]),
        ],
    ) as dns:
        config = configuration(tmp_path / "config.yaml", dns.nameserver)
        apps = [cluster.app("orders-1"), cluster.app("orders-2")]
        instances = [
            cluster.sidecar(
                "orders",
                app,
                mtls=False,
                extra=("--config", str(config), "--dapr-internal-grpc-port", str(port)),
            )
            for app, port in zip(apps, ports, strict=True)
        ]
        metrics_port = free_port()
        checkout = cluster.sidecar(
            "checkout",
            mtls=False,
            extra=("--config", str(config), "--metrics-port", str(metrics_port)),
        )
        for _ in range(40):
            response = request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/share")
            assert response.status == 200, response.body
        counts = [len(app.received()) for app in apps]
        assert sum(counts) == 40
        assert min(counts) > 0

        instances[1].process.kill()
        instances[1].process.wait()
        failed = 0
        for _ in range(30):
            if request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/after").status != 200:
                failed += 1
        assert failed <= 3
        assert len(apps[1].received()) == counts[1]
        assert len(apps[0].received()) >= counts[0] + 27

        missing = request(checkout.http_port, "GET", "/v1.0/invoke/missing/method/x")
        assert missing.status == 500
        assert missing.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: missing, err: app id missing not found in"
            " namespace default (missing.default.test does not exist (NXDOMAIN))",
        }

        scraped = request(metrics_port, "GET", "/metrics").body.decode()
        assert (
            'tether_resolution_lookups_total{app_id="checkout",dst_app_id="orders",'
            'dst_namespace="default",result="ok"}'
        ) in scraped
        assert 'tether_resolution_instances{app_id="checkout",dst_app_id="orders"' in scraped
        assert 'reason="not_found"' in scraped
