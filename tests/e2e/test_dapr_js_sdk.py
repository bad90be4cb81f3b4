"""An app written with the official Dapr JS SDK (@dapr/dapr, pinned in
tests/e2e/js/package.json) calls its sidecar over gRPC (CommunicationProtocolEnum.GRPC):
``client.invoker.invoke`` with POST and GET to an HTTP app behind another sidecar (mTLS
on), counted at the app; the app's 404 and 500 as the SDK reports them; the API token.

The SDK runs under node in its own process (tests/e2e/js/caller.js). It is installed by
.ci/run (``npm ci`` in tests/e2e/js); when it is missing or not the pinned version, the
test runs ``npm ci`` itself, and skips, saying why, only when node or npm is missing or
too old, or the install fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.rpc import error_details_pb2

from tests.e2e.harness import Cluster, Sidecar

JS_DIR = Path(__file__).resolve().parent / "js"
PACKAGE = "@dapr/dapr"
# @dapr/dapr 3.18 speaks gRPC through @connectrpc/connect-node, which needs node >= 20.
MIN_NODE_MAJOR = 20
NPM_TIMEOUT = 300.0
NODE_TIMEOUT = 90.0
# What caller.js sends with POST and PUT; JSON.stringify's compact form.
BODY = json.dumps({"order": 42, "note": "from the JS SDK"}, separators=(",", ":")).encode()
# client.invoker.invoke(app, method, HttpMethod.GET) sends the SDK's default data, {}.
GET_BODY = b"{}"
NOT_FOUND, UNKNOWN = 5, 2  # gRPC status numbers, as @connectrpc/connect's Code


def _installed_version() -> str | None:
    manifest = JS_DIR / "node_modules" / PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _why_not_available() -> str | None:
    """None once the pinned SDK is installed under tests/e2e/js, else why it cannot be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        return f"{missing} not found: the JS SDK test needs node >= {MIN_NODE_MAJOR} and npm"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        return f"node {version.stdout.strip()} is too old for {PACKAGE}: it needs >= 20"
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"][PACKAGE]
    if _installed_version() == pinned:
        return None
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"npm ci in {JS_DIR} did not finish within {NPM_TIMEOUT:.0f}s"
    if done.returncode != 0 or _installed_version() != pinned:
        return f"npm ci in {JS_DIR} could not install {PACKAGE} {pinned}: {done.stderr[-800:]}"
    return None


@pytest.fixture(scope="module")
def js_sdk() -> Iterator[None]:
    reason = _why_not_available()
    if reason is not None:
        pytest.skip(reason)
    yield


def run_js(
    cluster: Cluster, sidecar: Sidecar, app_id: str, *steps: str, token: str | None = None
) -> list[dict[str, object]]:
    env = {k: v for k, v in cluster.env.items() if not k.startswith("DAPR_")}
    if token is not None:
        env["DAPR_API_TOKEN"] = token  # the SDK's own default for daprApiToken
    argv = ["node", str(JS_DIR / "caller.js"), str(sidecar.grpc_port), app_id, *steps]
    results = cluster.client_results(argv, env, NODE_TIMEOUT, cwd=JS_DIR)
    assert [r["step"] for r in results] == list(steps)
    return results


def error_info(result: dict[str, object]) -> dict[str, object]:
    """The one google.rpc.ErrorInfo among the status details the SDK's error carries."""
    details = result["details"]
    assert isinstance(details, list)
    assert [d["type"] for d in details] == ["google.rpc.ErrorInfo"], details
    info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(details[0]["value"]))
    return {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}


def test_js_sdk_invokes_an_http_app_over_grpc_and_sees_its_errors(
    js_sdk: None, cluster: Cluster
) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout")

    steps = ("metadata", "POST:neworder", "GET:order/7", "POST:status/404", "POST:status/500")
    metadata, posted, got, missing, failing = run_js(cluster, checkout, "orders", *steps)

    # client.start() waited on GetMetadata; client.metadata.get() reads the same.
    assert metadata == {"step": "metadata", "id": "checkout"}

    # The app received each call once, with the SDK's verb, path and body.
    received = app.received()
    assert [(e["method"], e["path"]) for e in received] == [
        ("POST", "/neworder"),
        ("GET", "/order/7"),
        ("POST", "/status/404"),
        ("POST", "/status/500"),
    ]
    for entry, body in zip(received, (BODY, GET_BODY, BODY, BODY), strict=True):
        assert entry["body_length"] == len(body), entry
        assert entry["body_sha256"] == hashlib.sha256(body).hexdigest()
        headers = dict(entry["headers"])  # type: ignore[arg-type]
        assert headers["content-type"] == "application/json"
        assert headers["dapr-caller-app-id"] == "checkout"
        assert headers["dapr-callee-app-id"] == "orders"
        assert "dapr-api-token" not in headers

    # What the SDK returned: the app's JSON answer, parsed (the echo of the request).
    for result, method, path, body in (
        (posted, "POST", "/neworder", BODY),
        (got, "GET", "/order/7", GET_BODY),
    ):
        echoed = result["result"]
        assert isinstance(echoed, dict), result
        assert (echoed["method"], echoed["path"]) == (method, path)
        assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()

    # The app's non-2xx: the SDK raises @connectrpc/connect's ConnectError with Dapr's
    # gRPC status for it (404 NOT_FOUND, 500 UNKNOWN), the status text as the message,
    # dapr-http-status among its metadata, and an ErrorInfo with the code and the body.
    for result, status, code, text, name in (
        (missing, 404, NOT_FOUND, "Not Found", "not_found"),
        (failing, 500, UNKNOWN, "Internal Server Error", "unknown"),
    ):
        assert result["raised"] == "ConnectError", result
        assert result["code"] == code
        assert result["rawMessage"] == text
        assert result["message"] == f"[{name}] {text}"
        assert ["dapr-http-status", str(status)] in result["metadata"]  # type: ignore[operator]
        assert error_info(result) == {
            "reason": text,
            "domain": "dapr.io",
            "metadata": {"http.code": str(status), "http.error_message": f'{{"status": {status}}}'},
        }


def test_js_sdk_sends_the_api_token_it_is_given(js_sdk: None, cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout", env={"DAPR_API_TOKEN": "api-secret"})

    metadata, posted = run_js(
        cluster, checkout, "orders", "metadata", "PUT:neworder", token="api-secret"
    )
    assert metadata["id"] == "checkout"
    assert posted["result"]["method"] == "PUT", posted  # type: ignore[index]
    # Checked on the API port, never forwarded to the callee or its app.
    [entry] = app.received()
    assert (entry["method"], entry["path"]) == ("PUT", "/neworder")
    assert "dapr-api-token" not in dict(entry["headers"])  # type: ignore[arg-type]
