"""Access control on the callee, with real sidecars over mTLS: a Configuration allows some
operations and verbs and denies others; denied calls get Dapr's 403 and the app sees
nothing; escaped-path tricks are judged on what the app would route; a broken policy
stops the sidecar with its field path; ``tether config check`` says the same."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import App, Cluster, Response, Sidecar, free_port, request

ORDERS = """\
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
      - {name: /orders/*, httpVerb: [GET], action: allow}
      - {name: /NewOrder, httpVerb: [POST, PUT], action: allow}
      - {name: /public/secret, httpVerb: ['*'], action: deny}
      - {name: /public/**, httpVerb: ['*'], action: allow}
    # Dapr's hello-world example: pythonapp lives in another trust domain.
    - appId: pythonapp
      defaultAction: allow
      trustDomain: mydomain
      namespace: default
      operations:
      - {name: /neworder, httpVerb: [POST], action: deny}
"""

PYTHONAPP = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: pythonappconfig}
spec:
  accessControl: {defaultAction: allow, trustDomain: mydomain}
"""

BROKEN = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: broken}
spec:
  accessControl:
    defaultAction: deny
    policies:
    - appId: checkout
      namespace: default
      operations:
      - {name: /orders, httpVerb: [get]}
"""


def write(cluster: Cluster, name: str, text: str) -> Path:
    path = cluster.root / name
    path.write_text(text)
    return path


def paths(app: App) -> list[object]:
    return [entry["path"] for entry in app.received()]


def invoke(caller: Sidecar, verb: str, method: str) -> Response:
    return request(caller.http_port, verb, f"/v1.0/invoke/orders/method/{method}")


def assert_denied(response: Response, caller: str, operation: str, verb: str, td: str) -> None:
    assert response.status == 403, response
    assert response.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: orders, err: rpc error: code = PermissionDenied desc ="
        f" access control policy has denied access to id: spiffe://{td}/ns/default/{caller}"
        f" operation: {operation} verb: {verb}",
    }


def test_policy_allows_and_denies_by_caller_operation_and_verb(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    metrics_port = free_port()
    config = write(cluster, "orders.yaml", ORDERS)
    orders = cluster.sidecar(
        "orders",
        app,
        extra=("--config", str(config), "--metrics-port", str(metrics_port)),
    )
    checkout = cluster.sidecar("checkout")
    stranger = cluster.sidecar("stranger")
    python_config = write(cluster, "pythonapp.yaml", PYTHONAPP)
    python = cluster.sidecar("pythonapp", extra=("--config", str(python_config)))

    # Allowed: the operation and verb match an allow.
    assert invoke(checkout, "GET", "orders/42").status == 200
    # HTTP mode compares lower-cased; the app still gets the method as it was sent.
    assert invoke(checkout, "POST", "neworder").status == 200
    assert invoke(checkout, "PUT", "NEWORDER").status == 200
    assert paths(app) == ["/orders/42", "/neworder", "/NEWORDER"]

    # Denied: the wrong verb, another method, a caller without a policy.
    assert_denied(invoke(checkout, "POST", "orders/42"), "checkout", "orders/42", "POST", "public")
    assert_denied(invoke(checkout, "GET", "neworder"), "checkout", "neworder", "GET", "public")
    assert_denied(invoke(checkout, "GET", "admin"), "checkout", "admin", "GET", "public")
    assert_denied(invoke(stranger, "GET", "orders/42"), "stranger", "orders/42", "GET", "public")

    # The policy for pythonapp needs its trust domain, which its own Configuration set.
    assert_denied(invoke(python, "POST", "neworder"), "pythonapp", "neworder", "POST", "mydomain")
    assert invoke(python, "GET", "neworder").status == 200
    assert paths(app)[3:] == ["/neworder"]

    # Our own app calling itself goes straight to the app, as in daprd (no ACL there).
    own = request(orders.http_port, "DELETE", "/v1.0/invoke/orders/method/anything")
    assert own.status == 200
    assert paths(app)[4:] == ["/anything"]

    exposition = request(metrics_port, "GET", "/metrics").body.decode()
    acl = "dapr_runtime_acl_"
    assert (
        f'{acl}app_policy_action_blocked_total{{app_id="checkout",namespace="default",'
        'trustDomain="public"} 3.0' in exposition
    )
    assert (
        f'{acl}global_policy_action_blocked_total{{app_id="stranger",namespace="default",'
        'trustDomain="public"} 1.0' in exposition
    )
    assert (
        f'{acl}app_policy_action_allowed_total{{app_id="pythonapp",namespace="default",'
        'trustDomain="mydomain"} 1.0' in exposition
    )


def test_escaped_paths_cannot_slip_past_a_deny(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    config = write(cluster, "orders.yaml", ORDERS)
    cluster.sidecar("orders", app, extra=("--config", str(config)))
    checkout = cluster.sidecar("checkout")

    assert invoke(checkout, "GET", "public/page").status == 200
    assert paths(app) == ["/public/page"]
    for method, judged in [
        ("public/secret", "public/secret"),
        # Dot segments are resolved before anything looks at the method.
        ("public/x/../secret", "public/secret"),
        ("public//secret", "public/secret"),
        # Escaped separators and dots: allowed as written ("/public/**"), but an app
        # that decodes its path would route them to /public/secret: denied.
        ("public/x%2F..%2Fsecret", "public/x%2F..%2Fsecret"),
        ("public/x/%2e%2e/secret", "public/x/%2e%2e/secret"),
        ("public/x/..%2fsecret", "public/x/..%2fsecret"),
        ("public%2Fsecret", "public%2Fsecret"),
    ]:
        assert_denied(invoke(checkout, "GET", method), "checkout", judged, "GET", "public")
    assert paths(app) == ["/public/page"], "a denied call reached the app"

    # Double encoding decodes once to a literal escape: still under /public, and the app
    # gets exactly what was sent, not a path one more decoding would make.
    assert invoke(checkout, "GET", "public/x%252F..%252Fsecret").status == 200
    assert paths(app) == ["/public/page", "/public/x%252F..%252Fsecret"]


def test_a_broken_policy_stops_the_sidecar_and_config_check_agrees(cluster: Cluster) -> None:
    broken = write(cluster, "broken.yaml", BROKEN)
    result = cluster.tether("sidecar", "--app-id", "orders", "--config", str(broken))
    assert result.returncode == 2
    policy = "spec.accessControl.policies[0]"
    expected = [
        f"{broken}: {policy}.trustDomain: missing (every policy names it)",
        f'{broken}: {policy}.operations[0].httpVerb[0]: "get" never matches: daprd compares'
        " verbs as upper case",
        f"{broken}: {policy}.operations[0].action: missing: give allow or deny (Dapr's"
        " documentation says allow, daprd denies)",
    ]
    assert result.stderr.splitlines() == [f"tether: error: {line}" for line in expected]
    assert "Traceback" not in result.stderr

    good = write(cluster, "orders.yaml", ORDERS)
    check = cluster.tether("config", "check", str(good), str(broken))
    assert check.returncode == 1
    assert check.stderr.splitlines() == [*expected, "3 problems found"]
    assert check.stdout == ""

    check = cluster.tether("config", "check", str(good))
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        f"ok: ordersconfig ({good})",
        "  tracing: sampling rate 0.0001",
        "  access control: default deny, trust domain public, 2 policies",
        "    app checkout (namespace default, trust domain public): default deny;"
        " /orders/* [GET] allow; /NewOrder [POST,PUT] allow; /public/secret [*] deny;"
        " /public/** [*] allow",
        "    app pythonapp (namespace default, trust domain mydomain): default allow;"
        " /neworder [POST] deny",
    ]
    assert check.stderr == ""

    missing = cluster.tether("config", "check", str(cluster.root / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr == f"tether: error: {cluster.root / 'nope.yaml'}: no such file\n"
