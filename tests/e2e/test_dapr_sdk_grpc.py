"""An app written with the official Dapr Python SDK calls its sidecar over gRPC
(DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc): InvokeService to an HTTP app, counted at
the app, with Dapr's mapping of the app's non-2xx status; GetMetadata; a Dapr API
tether does not serve; the API token.

The SDK runs in its own process (tests/e2e/apps/sdk_grpc_caller.py), as in
test_dapr_sdk.py: its generated protos share package names with tether's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import APPS, Cluster, Sidecar

if importlib.util.find_spec("dapr") is None or importlib.util.find_spec("dapr.clients") is None:
    pytest.skip("the Dapr Python SDK (pip install dapr) is not installed", allow_module_level=True)

BODY = b'{"a":1}'
SDK_TIMEOUT = 90.0


def run_sdk_grpc(
    cluster: Cluster, sidecar: Sidecar, app_id: str, *steps: str, token: str | None = None
) -> list[dict[str, object]]:
    env = {
        **cluster.env,
        "DAPR_RUNTIME_HOST": "127.0.0.1",
        "DAPR_HTTP_PORT": str(sidecar.http_port),  # the SDK waits on healthz/outbound
        "DAPR_GRPC_PORT": str(sidecar.grpc_port),
        "DAPR_API_METHOD_INVOCATION_PROTOCOL": "grpc",
        "DAPR_HEALTH_TIMEOUT": "30",
    }
    for name in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_TOKEN"):
        env.pop(name, None)
    if token is not None:
        env["DAPR_API_TOKEN"] = token
    argv = [sys.executable, str(APPS / "sdk_grpc_caller.py"), app_id, *steps]
    results = cluster.client_results(argv, env, SDK_TIMEOUT)
    assert [r["step"] for r in results] == list(steps)
    return results


def test_sdk_invoke_over_grpc_reaches_the_app_and_maps_its_status(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout")

    steps = ("neworder", "status/404", "status/503", "metadata", "state", "noverb")
    ok, missing, failing, metadata, state, noverb = run_sdk_grpc(
        cluster, checkout, "orders", *steps
    )

    # The app received exactly what the SDK sent, once per call.
    received = app.received()
    neworder = [e for e in received if str(e["path"]).startswith("/neworder")]
    assert len(neworder) == 1, received
    entry = neworder[0]
    assert entry["path"] == "/neworder?a=b"
    assert entry["method"] == "POST"
    assert entry["body_length"] == len(BODY)
    assert entry["body_sha256"] == hashlib.sha256(BODY).hexdigest()
    app_headers = dict(entry["headers"])  # type: ignore[arg-type]
    assert app_headers["x-custom"] == "v"
    assert app_headers["content-type"] == "application/json"
    assert "dapr-api-token" not in app_headers

    # The answer: the app's body and content type, and its status as dapr-http-status.
    echoed = json.loads(ok["data"])  # type: ignore[arg-type]
    assert echoed["path"] == "/neworder?a=b"
    assert ok["content_type"] == "application/json"
    headers = ok["headers"]
    assert isinstance(headers, dict)
    assert headers["dapr-http-status"] == ["200"]
    assert headers["x-echo"] == ["yes"]

    # Non-2xx: reached the app once, then Dapr's gRPC error (CodeFromHTTPStatus) with
    # the status text, dapr-http-status, and an ErrorInfo with the code and the body.
    for result, status, code, text in (
        (missing, 404, "NOT_FOUND", "Not Found"),
        (failing, 503, "UNAVAILABLE", "Service Unavailable"),
    ):
        path = f"/status/{status}?a=b"
        assert [e["path"] for e in app.received() if e["path"] == path] == [path]
        assert result["code"] == code, result
        assert result["details"] == text
        assert ["dapr-http-status", str(status)] in result["initial_metadata"]  # type: ignore[operator]
        assert result["error_info"] == {
            "reason": text,
            "domain": "dapr.io",
            "metadata": {"http.code": str(status), "http.error_message": f'{{"status": {status}}}'},
        }

    assert metadata == {"step": "metadata", "id": "checkout"}
    assert state["code"] == "UNIMPLEMENTED", state
    assert "tether" in str(state["details"])
    assert "service invocation" in str(state["details"])
    # No HTTP verb: refused by the callee as daprd's HTTP app channel refuses it (a gRPC
    # app takes such a call), before the app; daprd's callee answers INTERNAL.
    assert noverb["code"] == "INTERNAL", noverb
    assert "missing HTTP extension field" in str(noverb["details"])
    assert not [e for e in app.received() if str(e["path"]).startswith("/noverb")]

    # Each Dapr API call is counted as daprd counts its gRPC API server's calls.
    completed = api_calls(checkout)
    assert completed[("/dapr.proto.runtime.v1.Dapr/InvokeService", "OK")] >= 1
    assert completed[("/dapr.proto.runtime.v1.Dapr/InvokeService", "NOT_FOUND")] == 1
    assert completed[("/dapr.proto.runtime.v1.Dapr/InvokeService", "UNAVAILABLE")] == 1
    assert completed[("/dapr.proto.runtime.v1.Dapr/GetMetadata", "OK")] >= 1


def api_calls(sidecar: Sidecar) -> dict[tuple[str, str], float]:
    """dapr_grpc_io_server_completed_rpcs of a sidecar, by (method, status)."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(sidecar.metrics_text()):
        if family.name != "dapr_grpc_io_server_completed_rpcs":
            continue
        for sample in family.samples:
            key = (sample.labels["grpc_server_method"], sample.labels["grpc_server_status"])
            found[key] = found.get(key, 0.0) + sample.value
    return found


def test_sdk_over_grpc_needs_the_api_token_when_one_is_set(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout", env={"DAPR_API_TOKEN": "api-secret"})

    allowed, allowed_metadata = run_sdk_grpc(
        cluster, checkout, "orders", "neworder", "metadata", token="api-secret"
    )
    assert json.loads(allowed["data"])["path"] == "/neworder?a=b", allowed  # type: ignore[arg-type]
    assert allowed_metadata["id"] == "checkout"

    missing, missing_metadata = run_sdk_grpc(cluster, checkout, "orders", "neworder", "metadata")
    wrong, _ = run_sdk_grpc(cluster, checkout, "orders", "neworder", "metadata", token="wrong")
    for denied in (missing, missing_metadata, wrong):
        assert denied["code"] == "UNAUTHENTICATED", denied
    # Only the call with the token reached the app.
    assert len([e for e in app.received() if str(e["path"]).startswith("/neworder")]) == 1
