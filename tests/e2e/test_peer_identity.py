"""A peer that presents the wrong identity is refused, and its app sees nothing.

Every sidecar here trusts the same CA, so the TLS chain is always valid: what
must stop the call is the caller pinning the callee's SPIFFE identity
(``spiffe://public/ns/<namespace>/<app-id>``). To get a caller to dial the wrong
peer, the tests make the shared registry lie about who listens at an address.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator

from tests.e2e.harness import App, Cluster, Response, Sidecar, request

# Each attempt rewrites the row just before the call; a caller's resolver may
# still hold an answer from before the rewrite for its (one second) cache TTL.
ATTEMPTS = 40
PAUSE = 0.1


@contextlib.contextmanager
def registry(cluster: Cluster) -> Iterator[sqlite3.Connection]:
    path = cluster.home / ".tether" / "registry.db"
    assert path.exists(), "no sidecar created the registry"
    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        connection.execute("PRAGMA busy_timeout=5000")
        yield connection
    finally:
        connection.close()


def registration_of(cluster: Cluster, app_id: str, namespace: str) -> tuple[str, str]:
    """(registration_id, address) of the one live row of that app."""
    with registry(cluster) as db:
        rows = db.execute(
            "SELECT registration_id, address FROM hosts WHERE app_id = ? AND namespace = ?",
            (app_id, namespace),
        ).fetchall()
    assert len(rows) == 1, rows
    return str(rows[0][0]), str(rows[0][1])


def rewrite(cluster: Cluster, registration_id: str, app_id: str, namespace: str) -> None:
    """Point a registration at another identity, freshly stamped so it is not stale."""
    with registry(cluster) as db:
        cursor = db.execute(
            "UPDATE hosts SET app_id = ?, namespace = ?, last_update = ? WHERE registration_id = ?",
            (app_id, namespace, int(time.time()), registration_id),
        )
    assert cursor.rowcount == 1


def not_found(response: Response) -> bool:
    return response.status == 500 and b"not found" in response.body


def invoke_through_lie(
    cluster: Cluster,
    caller: Sidecar,
    target: str,
    path: str,
    registration_id: str,
    app_id: str,
    namespace: str,
) -> Response:
    """Rewrite the row, then call; repeat (bounded) until the caller resolved the lie."""
    response = None
    for _ in range(ATTEMPTS):
        rewrite(cluster, registration_id, app_id, namespace)
        response = request(caller.http_port, "GET", f"/v1.0/invoke/{target}/method/{path}")
        if not not_found(response):
            return response
        time.sleep(PAUSE)
    raise AssertionError(f"the caller never resolved the rewritten row: {response}")


def assert_refused(response: Response, target: str) -> None:
    assert response.status == 500, response
    body = response.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert f"failed to invoke, id: {target}" in body["message"]
    # Resolution succeeded: the call was refused at the peer, not for want of one.
    assert "not found" not in body["message"]


def paths(app: App) -> list[object]:
    return [entry["path"] for entry in app.received()]


def test_peer_with_another_app_id_is_refused(cluster: Cluster) -> None:
    cluster.certs_init()
    impostor_app = cluster.app("impostor")
    cluster.sidecar("impostor", impostor_app)
    checkout = cluster.sidecar("checkout")
    registration_id, address = registration_of(cluster, "impostor", "default")

    # Control: called by its own name, the impostor answers, so it is reachable.
    ok = request(checkout.http_port, "GET", "/v1.0/invoke/impostor/method/ok")
    assert ok.status == 200, ok
    assert paths(impostor_app) == ["/ok"]

    # The registry now says `orders` lives at the impostor's address.
    refused = invoke_through_lie(
        cluster, checkout, "orders", "secret", registration_id, "orders", "default"
    )
    assert_refused(refused, "orders")
    assert registration_of(cluster, "orders", "default") == (registration_id, address)
    assert "/secret" not in paths(impostor_app)

    # Put the truth back: the same address and peer answer again by their real name,
    # so the refusal above was about the identity, not the peer being unreachable.
    rewrite(cluster, registration_id, "impostor", "default")
    again = request(checkout.http_port, "GET", "/v1.0/invoke/impostor/method/ok")
    assert again.status == 200, again
    assert paths(impostor_app) == ["/ok", "/ok"]


def test_peer_in_another_namespace_is_reached_only_by_its_namespace(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders-prod")
    cluster.sidecar("orders", app, env={"NAMESPACE": "prod"})
    checkout = cluster.sidecar("checkout")
    registration_id, _ = registration_of(cluster, "orders", "prod")

    # `orders` from namespace default means orders.default: there is none.
    missing = request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/secret")
    assert missing.status == 500, missing
    assert missing.json()["errorCode"] == "ERR_DIRECT_INVOKE"  # type: ignore[index]
    assert app.received() == []

    # Even when the registry files it under default, its certificate says ns/prod.
    refused = invoke_through_lie(
        cluster, checkout, "orders", "secret", registration_id, "orders", "default"
    )
    assert_refused(refused, "orders")
    assert app.received() == []

    rewrite(cluster, registration_id, "orders", "prod")
    reached = request(checkout.http_port, "GET", "/v1.0/invoke/orders.prod/method/hello")
    assert reached.status == 200, reached
    assert paths(app) == ["/hello"]
    headers = dict(app.received()[0]["headers"])  # type: ignore[arg-type]
    assert headers["dapr-caller-namespace"] == "default"
    assert headers["dapr-callee-app-id"] == "orders"
