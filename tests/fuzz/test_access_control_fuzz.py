"""Property tests for access control: any ``spec.accessControl`` shape loads or lists
problems under that section (never a traceback), and any method is judged without error,
never allowing what its decoded reading would deny."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import unquote

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.configuration import ConfigError, load_configuration
from proxy.core.access_policy import AccessControlSpec, AppPolicySpec, OperationSpec
from proxy.core.errors import InvalidMethod
from proxy.core.method_path import normalize_method
from proxy.hop.access_control import AccessControl
from proxy.hop.header_rules import CallerIdentity

KEYS = st.sampled_from(
    ["defaultAction", "trustDomain", "policies", "appId", "namespace", "operations", "name",
     "httpVerb", "action", "app"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["allow", "Deny", "block", "", "public", "My.Domain", "/op", "op/*", "GET",
                     "get", "*", "/a/../b", "app1", "default"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=14,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_any_access_control_section_loads_or_says_where(section: object) -> None:
    document = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "c"},
        "spec": {"accessControl": section},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        try:
            spec = load_configuration(path).access_control
        except ConfigError as exc:
            for line in exc.problems:
                assert line.startswith(f"{path}: spec.accessControl"), line
            return
    if spec is not None:
        assert spec.default_action in ("allow", "deny")
        AccessControl(spec, http=True)


SEGMENTS = st.sampled_from(
    ["admin", "public", "..", ".", "", "%2e%2e", "%2F", "x%2F..%2Fadmin", "%252F", "ADMIN", "*"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(SEGMENTS, max_size=6), st.sampled_from(["GET", "POST", "NONE"]))
def test_a_method_is_never_allowed_when_its_decoded_reading_is_denied(
    segments: list[str], verb: str
) -> None:
    spec = AccessControlSpec(
        "allow",
        policies=(
            AppPolicySpec(
                "app1",
                "default",
                "public",
                "allow",
                (
                    OperationSpec("/admin/**", ("*",), "deny"),
                    OperationSpec("/public/*", ("GET",), "allow"),
                ),
            ),
        ),
    )
    access = AccessControl(spec, http=True)
    caller = CallerIdentity("app1", "default", "public")
    try:
        method = normalize_method("/".join(segments))
    except InvalidMethod:
        return
    decision = access.judge(caller, method, verb)
    if not decision.allowed:
        return
    assert access.check(caller, method, verb).allowed
    if "%" in method:
        decoded = normalize_method(unquote(method))
        assert access.check(caller, decoded, verb).allowed
