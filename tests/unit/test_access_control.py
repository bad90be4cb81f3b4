"""Access control decisions as daprd makes them: the scenarios of Dapr's invoke-allowlist
documentation, the trie's wildcards and quirks, HTTP lower-casing, verbs, and the
decoded reading that stops escaped paths from slipping past a deny."""

from __future__ import annotations

import asyncio

import pytest

from proxy.core.access_policy import AccessControlSpec, AppPolicySpec, OperationSpec
from proxy.core.body import Body
from proxy.core.errors import CallRejected
from proxy.hop.access_control import (
    AccessControl,
    Decision,
    access_control_for,
    denied_message,
)
from proxy.hop.callee import Callee
from proxy.hop.header_rules import CallerIdentity
from proxy.protos import common_pb2, internals_pb2

APP1 = CallerIdentity("app1", "default", "public")
APP2 = CallerIdentity("app2", "ns1", "mydomain")


def op(name: str, action: str, *verbs: str) -> OperationSpec:
    return OperationSpec(name, tuple(verbs), action)


def policy(app: str, ns: str, td: str, default: str, *ops: OperationSpec) -> AppPolicySpec:
    return AppPolicySpec(app, ns, td, default, tuple(ops))


def acl(default: str, *policies: AppPolicySpec, http: bool = True) -> AccessControl:
    return AccessControl(AccessControlSpec(default, "public", tuple(policies)), http=http)


def allowed(access: AccessControl, caller: CallerIdentity | None, method: str, verb: str) -> bool:
    return access.judge(caller, method, verb).allowed


def test_scenario_1_deny_all_but_app1() -> None:
    access = acl("deny", policy("app1", "default", "public", "allow"))
    assert access.check(APP1, "anything/at/all", "GET") == Decision(True, "app")
    assert access.check(CallerIdentity("app9", "default", "public"), "op", "GET") == Decision(
        False, "global"
    )
    # No verified identity (mTLS off, or no usable certificate): the global default.
    assert access.check(None, "op", "GET") == Decision(False, "global")


def test_scenario_2_only_op1_of_app1() -> None:
    access = acl("deny", policy("app1", "default", "public", "deny", op("/op1", "allow", "*")))
    for verb in ("GET", "POST", "DELETE"):
        assert allowed(access, APP1, "op1", verb)
    assert not allowed(access, APP1, "op2", "POST")


def test_scenario_3_verbs_for_http_operation_action_for_grpc() -> None:
    policies = (
        policy("app1", "default", "public", "deny", op("/op1", "allow", "POST", "PUT")),
        policy("app2", "ns1", "mydomain", "deny", op("/op2", "allow")),
    )
    http = acl("deny", *policies)
    assert allowed(http, APP1, "op1", "POST")
    assert allowed(http, APP1, "op1", "PUT")
    assert not allowed(http, APP1, "op1", "GET")
    # In HTTP mode an operation without verbs allows nothing: the policy default stands.
    assert not allowed(http, APP2, "op2", "POST")
    grpc = acl("deny", *policies, http=False)
    assert allowed(grpc, APP2, "op2", "NONE")
    assert allowed(grpc, APP1, "op1", "NONE")
    assert not allowed(grpc, APP2, "op3", "NONE")


def test_scenario_4_one_segment_wildcard() -> None:
    access = acl("allow", policy("app1", "default", "public", "allow", op("/op1/*", "deny", "*")))
    assert not allowed(access, APP1, "op1/a", "GET")
    # "/op1/*" also covers "/op1" itself, but not two segments below it.
    assert not allowed(access, APP1, "op1", "GET")
    assert allowed(access, APP1, "op1/a/b", "GET")
    assert allowed(access, APP1, "op2", "GET")


def test_scenario_5_same_app_id_in_two_namespaces() -> None:
    access = acl(
        "allow",
        policy("app1", "ns1", "public", "allow"),
        policy("app1", "ns2", "public", "deny"),
    )
    assert allowed(access, CallerIdentity("app1", "ns1", "public"), "x", "GET")
    assert access.check(CallerIdentity("app1", "ns2", "public"), "x", "GET") == Decision(
        False, "app"
    )
    # Another namespace has no policy: the global default.
    assert allowed(access, CallerIdentity("app1", "ns3", "public"), "x", "GET")


def test_hello_world_example_and_trust_domain_mismatch() -> None:
    access = acl(
        "allow",
        policy("pythonapp", "default", "mydomain", "allow", op("/neworder", "deny", "POST")),
    )
    python = CallerIdentity("pythonapp", "default", "mydomain")
    assert not allowed(access, python, "neworder", "POST")
    assert allowed(access, python, "neworder", "GET")
    # The same app ID from another trust domain is not the policy's app: global default.
    impostor = CallerIdentity("pythonapp", "default", "public")
    assert access.check(impostor, "neworder", "POST") == Decision(True, "global")
    # An identity without a trust domain matches no policy either.
    assert access.check(CallerIdentity("pythonapp", "default"), "neworder", "POST").by == "global"


def test_all_below_wildcard_and_globs() -> None:
    access = acl(
        "allow",
        policy(
            "app1",
            "default",
            "public",
            "allow",
            op("/admin/**", "deny", "*"),
            op("/report*", "deny", "GET"),
            op("/a/b*c/d", "deny", "*"),
        ),
    )
    for method in ("admin", "admin/x", "admin/x/y/z"):
        assert not allowed(access, APP1, method, "GET"), method
    assert allowed(access, APP1, "administrator", "GET")
    assert not allowed(access, APP1, "reports", "GET")
    assert not allowed(access, APP1, "report", "GET")
    assert allowed(access, APP1, "reports", "POST")
    assert not allowed(access, APP1, "a/bXYZc/d", "GET")
    assert not allowed(access, APP1, "a/bc/d", "GET")
    assert allowed(access, APP1, "a/bXYZ/d", "GET")


def test_daprs_trie_quirks_are_kept() -> None:
    # A plain name also covers the methods below it.
    prefix = acl("allow", policy("app1", "default", "public", "allow", op("/op1", "deny", "*")))
    assert not allowed(prefix, APP1, "op1/deeper/still", "GET")
    # The first operation in file order that takes a segment wins.
    ordered = acl(
        "deny",
        policy(
            "app1",
            "default",
            "public",
            "deny",
            op("/op1/*", "allow", "*"),
            op("/op1/secret", "deny", "*"),
        ),
    )
    assert allowed(ordered, APP1, "op1/secret", "GET")


def test_http_mode_compares_lower_case_grpc_mode_exactly() -> None:
    policies = (policy("app1", "default", "public", "deny", op("/Orders/New", "allow", "*")),)
    assert allowed(acl("deny", *policies), APP1, "ORDERS/new", "POST")
    grpc = acl("deny", *policies, http=False)
    assert allowed(grpc, APP1, "Orders/New", "NONE")
    assert not allowed(grpc, APP1, "orders/new", "NONE")


def test_a_call_without_a_verb_takes_the_policy_default() -> None:
    allow_default = policy("app1", "default", "public", "allow", op("/op1", "deny", "*"))
    assert allowed(acl("deny", allow_default), APP1, "op1", "NONE")
    # A policy without its own default: "" is not allow, so daprd denies.
    no_default = policy("app1", "default", "public", "", op("/op1", "allow", "*"))
    assert not allowed(acl("allow", no_default), APP1, "op1", "NONE")


def test_an_operation_under_a_policy_without_default_is_labelled_global() -> None:
    access = acl("deny", policy("app1", "default", "public", "", op("/op1", "allow", "GET")))
    assert access.check(APP1, "op1", "GET") == Decision(True, "global")
    assert access.check(APP1, "op2", "GET") == Decision(False, "global")


@pytest.mark.parametrize(
    ("method", "verdict"),
    [
        ("public/page", True),
        ("admin/keys", False),
        # Escapes stay as they are for the app, but a decoding app would route these to
        # /admin/keys: denied.
        ("public%2F..%2Fadmin%2Fkeys", False),
        ("admin%2Fkeys", False),
        ("ADMIN%2fkeys", False),
        ("public/%2e%2e/admin/keys", False),
        # Double encoding decodes once to a literal "%2F": one segment, not admin's.
        ("admin%252Fkeys", True),
        # A decoded reading that is no valid method, or not UTF-8, is denied.
        ("public/a%3Fb", False),
        ("public/%ff", False),
        ("public/caf%C3%A9", True),
    ],
)
def test_escaped_paths_are_judged_as_a_decoding_app_would_route_them(
    method: str, verdict: bool
) -> None:
    access = acl("allow", policy("app1", "default", "public", "allow", op("/admin", "deny", "*")))
    assert allowed(access, APP1, method, "GET") is verdict


def test_denied_message_is_daprs() -> None:
    assert denied_message(APP1, "opDeny", "POST") == (
        "access control policy has denied access to id: spiffe://public/ns/default/app1"
        " operation: opDeny verb: POST"
    )
    assert denied_message(None, "x", "GET") == (
        "access control policy has denied access to id:  operation: x verb: GET"
    )


def test_access_control_for_warns_when_it_cannot_tell_callers_apart() -> None:
    assert access_control_for(None, "http", mtls=False) == (None, [])
    spec = AccessControlSpec("deny", policies=(policy("a", "b", "c", "allow"),))
    access, warnings = access_control_for(spec, "http", mtls=True)
    assert access is not None and warnings == []
    _, warnings = access_control_for(spec, "http", mtls=False)
    assert warnings == [
        "access control is configured but mTLS is off: no caller proves who it is, so every"
        " call gets the global default action (deny)"
    ]


def _request(method: str, verb: int) -> internals_pb2.InternalInvokeRequest:
    request = internals_pb2.InternalInvokeRequest(ver=internals_pb2.V1)
    request.message.method = method
    request.message.http_extension.verb = verb  # type: ignore[assignment]
    return request


def test_the_callee_refuses_before_the_app_and_skips_its_own_app() -> None:
    from proxy.app.channel import AppResponse

    seen: list[str] = []

    class App:
        async def call(self, verb: str, target: str, headers: object, body: Body) -> AppResponse:
            seen.append(f"{verb} {target}")
            return AppResponse(200, [], Body(b"ok"))

    access = acl("deny", policy("app1", "default", "public", "deny", op("/op1", "allow", "GET")))
    callee = Callee(App(), None, access_control=access)  # type: ignore[arg-type]
    post = _request("op1", common_pb2.HTTPExtension.POST)
    get = _request("/op1/../op1", common_pb2.HTTPExtension.GET)

    async def scenario() -> None:
        with pytest.raises(CallRejected) as info:
            await callee.serve(post, Body(b""), APP1)
        assert info.value.code == "PERMISSION_DENIED"
        assert str(info.value) == (
            "access control policy has denied access to id: spiffe://public/ns/default/app1"
            " operation: op1 verb: POST"
        )
        assert seen == []
        await callee.serve(get, Body(b""), APP1)
        assert seen == ["GET /op1"]
        # Our own app calling itself through us: daprd's local path has no ACL either.
        await callee.serve(post, Body(b""), APP1, local=True)
        assert seen == ["GET /op1", "POST /op1"]

    asyncio.run(scenario())


def test_acl_metrics_carry_the_callers_identity() -> None:
    from proxy.observability.metrics import Metrics

    metrics = Metrics("orders")
    metrics.acl_decision("app", True, "app1", "public", "default")
    metrics.acl_decision("global", False, "", "", "")
    text = metrics.exposition()[0].decode()
    assert (
        'dapr_runtime_acl_app_policy_action_allowed_total{app_id="app1",'
        'namespace="default",trustDomain="public"} 1.0' in text
    )
    assert (
        'dapr_runtime_acl_global_policy_action_blocked_total{app_id="",namespace="",'
        'trustDomain=""} 1.0' in text
    )
    for family in ("app_policy_action_blocked", "global_policy_action_allowed"):
        assert f"# TYPE dapr_runtime_acl_{family}_total counter" in text
