"""An app written with the official Dapr Python SDK works unchanged against tether.

The SDK runs in its own process (tests/e2e/apps/sdk_caller.py): its generated
protos share package names with tether's, so the two cannot be imported into one
interpreter, and a real app would not import tether anyway.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import pytest

from tests.e2e.harness import APPS, Cluster, Sidecar, free_port

# find_spec, not importorskip: importing the SDK here would load its protos into
# the pytest process, next to tether's.
if importlib.util.find_spec("dapr") is None or importlib.util.find_spec("dapr.clients") is None:
    pytest.skip("the Dapr Python SDK (pip install dapr) is not installed", allow_module_level=True)

BODY = b'{"a":1}'
SDK_TIMEOUT = 90.0


def run_sdk(
    cluster: Cluster, sidecar: Sidecar, app_id: str, *methods: str, token: str | None = None
) -> list[dict[str, object]]:
    env = {
        **cluster.env,
        "DAPR_RUNTIME_HOST": "127.0.0.1",
        "DAPR_HTTP_PORT": str(sidecar.http_port),
        # Nothing listens there: the SDK must not need gRPC for HTTP invocation.
        "DAPR_GRPC_PORT": str(free_port()),
        "DAPR_HEALTH_TIMEOUT": "30",
        "DAPR_HTTP_TIMEOUT_SECONDS": "30",
    }
    for name in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_METHOD_INVOCATION_PROTOCOL"):
        env.pop(name, None)
    if token is not None:
        env["DAPR_API_TOKEN"] = token
    argv = [sys.executable, str(APPS / "sdk_caller.py"), app_id, *methods]
    results = cluster.client_results(argv, env, SDK_TIMEOUT)
    assert [r["method"] for r in results] == list(methods)
    return results


def test_sdk_invoke_method_reaches_the_app_and_gets_its_answer(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout")

    ok, missing = run_sdk(cluster, checkout, "orders", "neworder", "status/404")

    # The app received exactly what the SDK sent.
    received = app.received()
    neworder = [entry for entry in received if entry["path"] == "/neworder"]
    assert len(neworder) == 1, received
    entry = neworder[0]
    assert entry["method"] == "POST"
    assert entry["body_length"] == len(BODY)
    assert entry["body_sha256"] == hashlib.sha256(BODY).hexdigest()
    app_headers = dict(entry["headers"])  # type: ignore[arg-type]
    assert app_headers["x-custom"] == "v"
    # The SDK's default content type ("application/json; charset=utf-8") passes through.
    assert app_headers["content-type"].startswith("application/json")
    assert app_headers["user-agent"].startswith("dapr-sdk-python/")

    # The SDK got the echo app's answer back: status, body and the app's header.
    assert ok["status"] == 200, ok
    echoed = json.loads(ok["data"])  # type: ignore[arg-type]
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/neworder"
    assert echoed["body_sha256"] == hashlib.sha256(BODY).hexdigest()
    headers = ok["headers"]
    assert isinstance(headers, dict)
    assert headers["x-echo"] == ["yes"]
    assert ok["content_type"] == "application/json"

    # The app's 404 reached the app and surfaced as the SDK's HTTP error carrying 404.
    assert [e["path"] for e in received if e["path"] == "/status/404"] == ["/status/404"]
    assert missing["raised"] == "DaprHttpError", missing
    assert missing["module"] == "dapr.clients.exceptions"
    assert missing["status_code"] == "404"
    assert json.loads(missing["raw"]) == {"status": 404}  # type: ignore[arg-type]


def test_sdk_passes_a_token_protected_sidecar_with_the_same_token(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout", env={"DAPR_API_TOKEN": "api-secret"})

    (allowed,) = run_sdk(cluster, checkout, "orders", "neworder", token="api-secret")
    assert allowed["status"] == 200, allowed
    assert json.loads(allowed["data"])["path"] == "/neworder"  # type: ignore[arg-type]
    entry = app.received()[-1]
    assert entry["path"] == "/neworder"
    # The caller's API token is for its own sidecar; it is not forwarded to the app.
    assert "dapr-api-token" not in dict(entry["headers"])  # type: ignore[arg-type]

    # A wrong token: the SDK still starts (healthz/outbound needs none) but the call is 401.
    (denied,) = run_sdk(cluster, checkout, "orders", "neworder", token="wrong")
    assert denied["raised"] == "DaprHttpError", denied
    assert denied["status_code"] == "401"
    assert denied["raw"] == "invalid api token"
    assert len([e for e in app.received() if e["path"] == "/neworder"]) == 1
