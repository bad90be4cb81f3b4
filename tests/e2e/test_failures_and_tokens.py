"""Failure paths: app down, a peer from a foreign CA, API tokens."""

from __future__ import annotations

from tests.e2e.harness import Cluster, request


def test_app_down_gives_dapr_error(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout")
    cluster.stop(app.process)
    response = request(
        checkout.http_port, "POST", "/v1.0/invoke/orders/method/neworder", body=b"{}"
    )
    assert response.status == 500
    body = response.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"  # type: ignore[index]
    assert "failed to invoke, id: orders" in body["message"]  # type: ignore[index]


def test_peer_from_a_foreign_ca_is_refused(cluster: Cluster) -> None:
    trusted = cluster.certs_init(cluster.root / "ca-a")
    foreign = cluster.certs_init(cluster.root / "ca-b")
    app = cluster.app("orders")
    cluster.sidecar("orders", app, extra=("--certs-dir", str(trusted)))
    intruder = cluster.sidecar("intruder", extra=("--certs-dir", str(foreign)))
    response = request(intruder.http_port, "GET", "/v1.0/invoke/orders/method/secret")
    assert response.status == 500
    assert response.json()["errorCode"] == "ERR_DIRECT_INVOKE"  # type: ignore[index]
    assert app.received() == []
    # A caller from the same CA gets through, so the refusal above was the CA.
    friend = cluster.sidecar("friend", extra=("--certs-dir", str(trusted)))
    assert request(friend.http_port, "GET", "/v1.0/invoke/orders/method/secret").status == 200
    assert len(app.received()) == 1


def test_plaintext_caller_cannot_reach_an_mtls_callee(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    plain = cluster.sidecar("plain", mtls=False)
    assert request(plain.http_port, "GET", "/v1.0/invoke/orders/method/x").status == 500
    assert app.received() == []


def test_plaintext_sidecars_work_when_mtls_is_off(cluster: Cluster) -> None:
    app = cluster.app("orders")
    cluster.sidecar("orders", app, mtls=False)
    checkout = cluster.sidecar("checkout", mtls=False)
    assert request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/plain").status == 200
    assert app.received()[-1]["path"] == "/plain"


def test_api_token_guards_the_api_and_app_token_reaches_the_app(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app, env={"APP_API_TOKEN": "app-secret"})
    checkout = cluster.sidecar("checkout", env={"DAPR_API_TOKEN": "api-secret"})
    path = "/v1.0/invoke/orders/method/tok"
    for headers in ({}, {"dapr-api-token": "wrong"}):
        denied = request(checkout.http_port, "GET", path, headers=headers)
        assert denied.status == 401
        assert denied.body == b"invalid api token"
    assert app.received() == []
    assert request(checkout.http_port, "GET", "/v1.0/healthz").status == 204
    assert request(checkout.http_port, "GET", "/v1.0/healthz/outbound").status == 204
    assert request(checkout.http_port, "GET", "/v1.0/metadata").status == 401
    allowed = request(checkout.http_port, "GET", path, headers={"dapr-api-token": "api-secret"})
    assert allowed.status == 200
    headers = dict(app.received()[-1]["headers"])  # type: ignore[arg-type]
    assert headers["dapr-api-token"] == "app-secret"


def test_shutdown_endpoint_stops_the_sidecar(cluster: Cluster) -> None:
    sidecar = cluster.sidecar("lonely", mtls=False)
    assert request(sidecar.http_port, "POST", "/v1.0/shutdown").status == 204
    assert sidecar.process.wait(30) == 0
