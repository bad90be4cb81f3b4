"""gRPC apps (--app-protocol grpc and grpcs): the Python SDK's ``dapr.ext.grpc.App``
behind a sidecar, called by the Python SDK over HTTP and over gRPC, counted at the
app; an app's gRPC error as each API shows it; a plain grpcio app over TLS with a
self-signed certificate (grpcs); app health checks with AppCallbackHealthCheck;
--app-max-concurrency; APP_API_TOKEN as the app's dapr-api-token.

The SDK and the apps run in their own processes (tests/e2e/apps/): their generated
protos share package names with tether's."""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import (
    APPS,
    App,
    Cluster,
    Sidecar,
    free_port,
    request,
    wait_for_port,
    wait_until,
)

if importlib.util.find_spec("dapr") is None or importlib.util.find_spec("cloudevents") is None:
    pytest.skip(
        "the Dapr Python SDK with dapr.ext.grpc (pip install 'dapr[grpc]') is not installed",
        allow_module_level=True,
    )

BODY = '{"a":1}'
SDK_TIMEOUT = 90.0
GRPC_APP = ("--app-protocol", "grpc")
HEALTH = ("--enable-app-health-check", "--app-health-probe-interval", "1",
          "--app-health-threshold", "1")  # fmt: skip


def grpc_app(cluster: Cluster, mode: str, *tls: str) -> App:
    port = free_port()
    log_path = cluster.root / f"grpc-{mode}-{port}.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(APPS / "grpc_callee.py"), mode, str(port), str(log_path), *tls]
    )
    cluster.processes.append(process)
    wait_for_port(port, process)
    return App(port, log_path, process)


def call_with_sdk(
    cluster: Cluster, sidecar: Sidecar, protocol: str, *steps: str
) -> list[dict[str, object]]:
    env = {
        **cluster.env,
        "DAPR_RUNTIME_HOST": "127.0.0.1",
        "DAPR_HTTP_PORT": str(sidecar.http_port),
        "DAPR_GRPC_PORT": str(sidecar.grpc_port),
        "DAPR_API_METHOD_INVOCATION_PROTOCOL": protocol,
        "DAPR_HEALTH_TIMEOUT": "30",
    }
    for name in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_TOKEN"):
        env.pop(name, None)
    argv = [sys.executable, str(APPS / "sdk_grpc_app_caller.py"), "orders", *steps]
    results = cluster.client_results(argv, env, SDK_TIMEOUT)
    assert len(results) == len(steps)
    return results


def calls(app: App, method: str) -> list[dict[str, object]]:
    return [entry for entry in app.received() if entry["method"] == method]


def test_sdk_app_answers_sdk_callers_over_http_and_grpc(cluster: Cluster) -> None:
    cluster.certs_init()
    app = grpc_app(cluster, "sdk")
    cluster.sidecar("orders", app, extra=GRPC_APP, env={"APP_API_TOKEN": "app-secret"})
    checkout = cluster.sidecar("checkout")

    over_http = call_with_sdk(cluster, checkout, "http", "hello", "boom")
    over_grpc = call_with_sdk(cluster, checkout, "grpc", "hello", "boom", "raw:hello")

    # Each call reached the app once, with the request and Dapr's metadata.
    hellos = calls(app, "hello")
    assert len(hellos) == 3, hellos
    assert len(calls(app, "boom")) == 2
    for seen in hellos:
        assert seen["data"] == BODY
        assert seen["content_type"] == "application/json"
        metadata = seen["metadata"]
        assert isinstance(metadata, dict)
        assert metadata["dapr-api-token"] == "app-secret"  # APP_API_TOKEN
        assert metadata["dapr-caller-app-id"] == "checkout"
        assert metadata["dapr-callee-app-id"] == "orders"
        assert "dapr-app-id" not in metadata

    http_hello, http_boom = over_http
    grpc_hello, grpc_boom, raw_hello = over_grpc
    for answer in (http_hello, grpc_hello):
        assert json.loads(str(answer["data"]))["method"] == "hello", answer
        assert answer["content_type"] == "application/json"
        headers = answer["headers"]
        assert isinstance(headers, dict)
        assert headers["x-app-header"] == ["h1"], headers
    assert ["x-app-header", "h1"] in raw_hello["initial_metadata"]  # type: ignore[operator]

    # The app raised: grpcio answers UNKNOWN. Over HTTP daprd's HTTPStatusFromCode (500)
    # with the status as JSON; over gRPC the app's status itself.
    assert http_boom["status_code"] == 500, http_boom
    assert json.loads(str(http_boom["raw"])) == {
        "code": 2,
        "message": "Exception calling application: kaboom",
    }
    assert grpc_boom["code"] == "UNKNOWN", grpc_boom
    assert grpc_boom["details"] == "Exception calling application: kaboom"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "grpcs-app")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "app.crt", directory / "app.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_grpcs_app_with_a_self_signed_certificate(cluster: Cluster) -> None:
    cluster.certs_init()
    cert, key = _self_signed(cluster.root)
    app = grpc_app(cluster, "plain", str(cert), str(key))
    orders = cluster.sidecar("orders", app, extra=("--app-protocol", "grpcs"))
    checkout = cluster.sidecar("checkout")

    # Over HTTP, from another sidecar, and from the app's own (the local shortcut).
    for via in (checkout, orders):
        ok = request(via.http_port, "POST", "/v1.0/invoke/orders/method/hello?q=1", b"x")
        assert ok.status == 200, ok.body
        assert ok.body == b"hello from plain"
        assert ok.headers["content-type"] == "text/plain"
        assert ok.headers["x-app-header"] == "h1"
        assert "x-app-trailer" not in ok.headers  # trailers do not reach HTTP callers
        bad = request(via.http_port, "POST", "/v1.0/invoke/orders/method/bad", b"x")
        assert bad.status == 400, bad.body  # INVALID_ARGUMENT
        assert bad.json() == {
            "code": 3,
            "message": "bad input",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "BAD_INPUT",
                    "domain": "example.com",
                }
            ],
        }
    hellos = calls(app, "hello")
    assert len(hellos) == 2
    assert hellos[0]["verb"] == 3 and hellos[0]["query"] == "q=1"  # POST, as sent

    # A body larger than one multiplexed frame: CallLocalStream between the sidecars.
    large = b"y" * (600 * 1024)
    streamed = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/hello", large)
    assert streamed.status == 200, streamed.body
    assert calls(app, "hello")[-1]["length"] == len(large)

    # Over gRPC (InvokeService): the app's status, headers and trailers pass through.
    raw_hello, raw_bad = call_with_sdk(cluster, checkout, "grpc", "raw:hello", "raw:bad")
    assert raw_hello["data"] == "hello from plain", raw_hello
    assert raw_hello["content_type"] == "text/plain"
    assert ["x-app-header", "h1"] in raw_hello["initial_metadata"]  # type: ignore[operator]
    assert ["x-app-trailer", "t1"] in raw_hello["trailing_metadata"]  # type: ignore[operator]
    assert raw_bad["code"] == "INVALID_ARGUMENT", raw_bad
    assert raw_bad["details"] == "bad input"
    assert raw_bad["error_info"] == {"reason": "BAD_INPUT", "domain": "example.com"}
    assert ["x-app-trailer", "t1"] in raw_bad["trailing_metadata"]  # type: ignore[operator]
    assert len(calls(app, "bad")) == 3


RETRY_ORDERS = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: retry-orders}
spec:
  policies:
    retries:
      twice: {policy: constant, duration: 10ms, maxRetries: 2}
  targets:
    apps:
      orders: {retry: twice}
"""


def test_a_grpc_apps_error_is_retried_on_the_grpc_api_only(cluster: Cluster) -> None:
    """daprd's HTTP API hands a gRPC app's error back as the call's answer (here 400
    with the status as JSON), without retrying it; its InvokeService retries it under
    the caller's policy. Counted at the app."""
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    (resources / "resiliency.yaml").write_text(RETRY_ORDERS)
    app = grpc_app(cluster, "plain")
    cluster.sidecar("orders", app, extra=GRPC_APP)
    checkout = cluster.sidecar("checkout", extra=("--resources-path", str(resources)))

    bad = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/bad", b"x")
    assert bad.status == 400, bad.body
    assert bad.json()["message"] == "bad input"
    assert len(calls(app, "bad")) == 1

    (raw_bad,) = call_with_sdk(cluster, checkout, "grpc", "raw:bad")
    assert raw_bad["code"] == "INVALID_ARGUMENT", raw_bad
    assert len(calls(app, "bad")) == 1 + 3


def test_health_checks_use_app_callback_health_check(cluster: Cluster) -> None:
    cluster.certs_init()
    app = grpc_app(cluster, "sdk")
    orders = cluster.sidecar("orders", app, extra=(*GRPC_APP, *HEALTH))
    checkout = cluster.sidecar("checkout")
    sick = Path(str(app.log_path) + ".sick")

    def healthz(status: int) -> None:
        wait_until(
            lambda: request(orders.http_port, "GET", "/v1.0/healthz", timeout=5).status == status,
            f"healthz answers {status}",
        )

    ok = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/hello", b"{}")
    assert ok.status == 200, ok.body
    sick.write_text("")
    healthz(500)
    refused = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/hello", b"{}")
    assert refused.status == 500
    assert "app is not in a healthy state" in refused.json()["message"]  # type: ignore[index]
    assert len(calls(app, "hello")) == 1  # refused before the app
    os.remove(sick)
    healthz(204)
    again = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/hello", b"{}")
    assert again.status == 200, again.body
    assert len(calls(app, "hello")) == 2


def test_app_max_concurrency_holds_at_the_app(cluster: Cluster) -> None:
    cluster.certs_init()
    app = grpc_app(cluster, "sdk")
    cluster.sidecar("orders", app, extra=(*GRPC_APP, "--app-max-concurrency", "1"))
    checkout = cluster.sidecar("checkout")

    (answers,) = call_with_sdk(cluster, checkout, "http", "slow*4")
    assert isinstance(answers, list)
    assert [a["data"] for a in answers] == ["slept"] * 4, answers
    slow = calls(app, "slow")
    assert len(slow) == 4
    assert max(int(str(entry["in_flight"])) for entry in slow) == 1


GRPC_ACL = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: ordersconfig}
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: checkout
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - {name: /hello, httpVerb: [GET], action: allow}
"""


def test_access_control_for_a_grpc_app_judges_the_operation_only(cluster: Cluster) -> None:
    cluster.certs_init()
    app = grpc_app(cluster, "sdk")
    config = cluster.root / "orders.yaml"
    config.write_text(GRPC_ACL)
    cluster.sidecar("orders", app, extra=(*GRPC_APP, "--config", str(config)))
    checkout = cluster.sidecar("checkout")

    # Not an HTTP app: the operation's action holds whatever the verb (daprd's rule for
    # non-HTTP app protocols), and names are compared as written (not lower-cased).
    for verb in ("GET", "POST"):
        allowed = request(checkout.http_port, verb, "/v1.0/invoke/orders/method/hello")
        assert allowed.status == 200, allowed.body
    denied = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/HELLO")
    assert denied.status == 403, denied.body
    assert denied.json() == {  # type: ignore[comparison-overlap]
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: orders, err: rpc error: code = PermissionDenied desc ="
        " access control policy has denied access to id: spiffe://public/ns/default/checkout"
        " operation: HELLO verb: POST",
    }
    assert len(calls(app, "hello")) == 2
    assert not calls(app, "HELLO")
