"""Two sidecars with mTLS on the embedded registry: checkout calls orders by app ID."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.e2e.harness import App, Cluster, Sidecar, request


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, App, Sidecar, Sidecar]]:
    cluster = Cluster(tmp_path_factory.mktemp("pair"))
    try:
        cluster.certs_init()
        orders_app = cluster.app("orders")
        orders = cluster.sidecar("orders", orders_app)
        checkout = cluster.sidecar("checkout")
        yield cluster, orders_app, orders, checkout
    finally:
        cluster.stop_all()


def _last(app: App) -> dict[str, object]:
    return app.received()[-1]


def _headers(entry: dict[str, object]) -> dict[str, str]:
    return {name: value for name, value in entry["headers"]}  # type: ignore[union-attr, misc]


@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_verb_reaches_the_app(pair: tuple[Cluster, App, Sidecar, Sidecar], verb: str) -> None:
    _, app, _, checkout = pair
    before = len(app.received())
    body = b'{"item":"book"}' if verb in ("POST", "PUT", "PATCH") else None
    response = request(checkout.http_port, verb, "/v1.0/invoke/orders/method/neworder", body=body)
    assert response.status == 200
    received = app.received()
    assert len(received) == before + 1
    assert received[-1]["method"] == verb
    assert received[-1]["path"] == "/neworder"
    if body:
        assert received[-1]["body_length"] == len(body)
    assert response.headers["x-echo"] == "yes"


def test_head_gets_headers_and_no_body(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, _, checkout = pair
    response = request(checkout.http_port, "HEAD", "/v1.0/invoke/orders/method/neworder")
    assert response.status == 200
    assert response.body == b""
    assert _last(app)["method"] == "HEAD"


def test_query_nested_path_and_escapes_pass_verbatim(
    pair: tuple[Cluster, App, Sidecar, Sidecar],
) -> None:
    _, app, _, checkout = pair
    path = "/v1.0/invoke/orders/method/api/v1/a%2Fb/../items?x=1&y=%20z&x=2"
    assert request(checkout.http_port, "GET", path).status == 200
    # ".." is resolved once, "%2F" is never decoded into a separator.
    assert _last(app)["path"] == "/api/v1/items?x=1&y=%20z&x=2"


def test_headers_both_ways_and_trusted_headers(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, _, checkout = pair
    response = request(
        checkout.http_port,
        "POST",
        "/v1.0/invoke/orders/method/neworder",
        body=b"{}",
        headers={
            "Content-Type": "application/json",
            "X-Custom": "kept",
            "Dapr-Caller-App-Id": "spoofed",
            "dapr-callee-app-id": "spoofed",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "hop",
            "Keep-Alive": "timeout=5",
            "X-Forwarded-For": "10.1.2.3",
        },
    )
    assert response.status == 200
    headers = _headers(_last(app))
    assert headers["x-custom"] == "kept"
    assert headers["content-type"] == "application/json"
    assert headers["dapr-caller-app-id"] == "checkout"
    assert headers["dapr-caller-namespace"] == "default"
    assert headers["dapr-callee-app-id"] == "orders"
    assert headers["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert "forwarded" in headers and "x-forwarded-host" in headers
    for absent in (
        "x-drop-me",
        "keep-alive",
        "dapr-app-id",
        "dapr-api-token",
        "destination-app-id",
    ):
        assert absent not in headers
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-echo"] == "yes"


@pytest.mark.parametrize("code", [201, 204, 404, 409, 500, 503])
def test_app_status_passes_through(pair: tuple[Cluster, App, Sidecar, Sidecar], code: int) -> None:
    _, _, _, checkout = pair
    response = request(checkout.http_port, "GET", f"/v1.0/invoke/orders/method/status/{code}")
    assert response.status == code
    if code != 204:
        assert response.json() == {"status": code}


def test_dapr_app_id_header_on_any_path(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, _, checkout = pair
    response = request(
        checkout.http_port, "POST", "/neworder/7?q=1", body=b"x", headers={"dapr-app-id": "orders"}
    )
    assert response.status == 200
    entry = _last(app)
    assert entry["path"] == "/neworder/7?q=1"
    assert "dapr-app-id" not in _headers(entry)


def test_basic_auth_form(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, _, checkout = pair
    token = base64.b64encode(b"dapr-app-id:orders").decode()
    response = request(
        checkout.http_port, "GET", "/items", headers={"Authorization": f"Basic {token}"}
    )
    assert response.status == 200
    assert _last(app)["path"] == "/items"
    assert "authorization" not in _headers(_last(app))


def test_namespaced_app_id(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, _, checkout = pair
    assert request(checkout.http_port, "GET", "/v1.0/invoke/orders.default/method/ns").status == 200
    assert _last(app)["path"] == "/ns"
    before = len(app.received())
    response = request(checkout.http_port, "GET", "/v1.0/invoke/orders.prod/method/ns")
    assert response.status == 500
    assert response.json()["errorCode"] == "ERR_DIRECT_INVOKE"  # type: ignore[index]
    assert len(app.received()) == before


def test_unknown_app_fails_with_dapr_error(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, _, checkout = pair
    before = len(app.received())
    response = request(checkout.http_port, "POST", "/v1.0/invoke/nosuchapp/method/x", body=b"{}")
    assert response.status == 500
    body = response.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"  # type: ignore[index]
    assert body["message"].startswith("failed to invoke, id: nosuchapp, err: ")  # type: ignore[index]
    assert len(app.received()) == before


def test_no_app_id_is_404(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, _, _, checkout = pair
    response = request(checkout.http_port, "GET", "/some/path")
    assert response.status == 404
    assert response.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed getting app id either from the URL path or the header dapr-app-id",
    }


def test_calling_own_app_id_goes_to_the_local_app(
    pair: tuple[Cluster, App, Sidecar, Sidecar],
) -> None:
    _, app, orders, _ = pair
    response = request(orders.http_port, "GET", "/v1.0/invoke/orders/method/self")
    assert response.status == 200
    assert _last(app)["path"] == "/self"
    assert _headers(_last(app))["dapr-caller-app-id"] == "orders"


def test_health_and_metadata(pair: tuple[Cluster, App, Sidecar, Sidecar]) -> None:
    _, app, orders, _ = pair
    assert request(orders.http_port, "GET", "/v1.0/healthz").status == 204
    assert request(orders.http_port, "GET", "/v1.0/healthz/outbound").status == 204
    mismatch = request(orders.http_port, "GET", "/v1.0/healthz?appid=other")
    assert mismatch.status == 500
    assert mismatch.json()["errorCode"] == "ERR_HEALTH_APPID_NOT_MATCH"  # type: ignore[index]
    metadata = request(orders.http_port, "GET", "/v1.0/metadata").json()
    assert metadata["id"] == "orders"  # type: ignore[index]
    assert metadata["appConnectionProperties"] == {  # type: ignore[index]
        "port": app.port,
        "protocol": "http",
        "channelAddress": "127.0.0.1",
    }
