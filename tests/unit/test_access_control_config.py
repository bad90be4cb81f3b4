"""``spec.accessControl`` read from a Configuration file: Dapr's defaults, and every
problem with its field path, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.configuration import ConfigError, load_configuration
from proxy.config.configuration_check import check_configurations
from proxy.core.access_policy import AccessControlSpec, AppPolicySpec, OperationSpec

HEADER = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
"""


def load(tmp_path: Path, section: str) -> AccessControlSpec | None:
    path = tmp_path / "config.yaml"
    path.write_text(HEADER + section)
    return load_configuration(path).access_control


def problems(tmp_path: Path, section: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(HEADER + section)
    with pytest.raises(ConfigError) as info:
        load_configuration(path)
    return [p.removeprefix(f"{path}: ") for p in info.value.problems]


def test_absent_or_empty_section_means_no_access_control(tmp_path: Path) -> None:
    assert load(tmp_path, "  tracing: {samplingRate: '1'}\n") is None
    assert load(tmp_path, "  accessControl:\n") is None
    assert load(tmp_path, "  accessControl: {}\n") is None
    assert load(tmp_path, "  accessControl: {defaultAction: '', policies: []}\n") is None


def test_empty_default_action_is_deny_with_policies_and_allow_without(tmp_path: Path) -> None:
    policy = "{appId: app1, namespace: default, trustDomain: public}"
    with_policies = load(tmp_path, f"  accessControl:\n    policies: [{policy}]\n")
    assert with_policies is not None
    assert with_policies.default_action == "deny"
    assert not with_policies.default_action_given
    assert with_policies.notes() and "denied" in with_policies.notes()[0]
    only_domain = load(tmp_path, "  accessControl: {trustDomain: mydomain}\n")
    assert only_domain == AccessControlSpec("allow", "mydomain", (), False)
    assert only_domain.notes() == []


def test_scenario_3_of_daprs_documentation(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """\
  accessControl:
    defaultAction: deny
    trustDomain: "public"
    policies:
    - appId: app1
      defaultAction: deny
      trustDomain: 'public'
      namespace: "default"
      operations:
      - name: /op1
        httpVerb: ['POST', 'PUT']
        action: allow
    - appId: app2
      defaultAction: Deny
      trustDomain: 'mydomain'
      namespace: "ns1"
      operations:
      - name: op2
        action: ALLOW
""",
    )
    assert spec == AccessControlSpec(
        "deny",
        "public",
        (
            AppPolicySpec(
                "app1",
                "default",
                "public",
                "deny",
                (OperationSpec("/op1", ("POST", "PUT"), "allow"),),
            ),
            AppPolicySpec("app2", "ns1", "mydomain", "deny", (OperationSpec("/op2", (), "allow"),)),
        ),
    )


def test_every_problem_at_once_with_its_field_path(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
  accessControl:
    defaultAction: block
    trustDomain: Public
    polices: []
    policies:
    - appId: app1
      namespace: default
      trustDomain: public
      defaultAction: 1
      operations:
      - name: /op1
        httpVerb: [get, FETCH, 3]
        action: allow
      - name: /op2/
        action: allow
      - name: /op3
      - {name: /op1, action: deny}
      - name: /a/../b
        action: allow
      - name: /x?y
        action: allow
      - {name: "", action: allow, verb: GET}
    - appId: app2
    - appId: app1
      namespace: default
      trustDomain: public
    - appId: Bad.Id
      namespace: default
      trustDomain: public
    - [not, a, mapping]
""",
    )
    acl = "spec.accessControl"
    p0 = f"{acl}.policies[0]"
    assert found == [
        f'{acl}.polices: unknown field (did you mean "policies"?)',
        f'{acl}.defaultAction: expected allow or deny, got "block"',
        f"{acl}.trustDomain: invalid trust domain 'Public': use lower-case letters, digits,"
        " '.', '-' and '_' (at most 255 characters, not starting or ending with '.'):"
        " no caller's SPIFFE ID can match it",
        f"{p0}.defaultAction: expected allow or deny, got an integer",
        f'{p0}.operations[0].httpVerb[0]: "get" never matches: daprd compares verbs as upper case',
        f"{p0}.operations[0].httpVerb[1]: expected one of GET, HEAD, POST, PUT, DELETE, CONNECT,"
        ' OPTIONS, TRACE, PATCH or "*", got "FETCH"',
        f"{p0}.operations[0].httpVerb[2]: expected one of GET, HEAD, POST, PUT, DELETE, CONNECT,"
        ' OPTIONS, TRACE, PATCH or "*", got an integer',
        f'{p0}.operations[1].name: "/op2/" can never match: methods are normalised, with no'
        " empty, '.' or '..' segments and no trailing '/'",
        f"{p0}.operations[2].action: missing: give allow or deny (Dapr's documentation says"
        " allow, daprd denies)",
        f'{p0}.operations[4].name: "/a/../b" can never match: methods are normalised, with no'
        " empty, '.' or '..' segments and no trailing '/'",
        f"{p0}.operations[5].name: \"/x?y\" can never match: a method holds no '?', '#' or"
        " controls",
        f"{p0}.operations[6].verb: unknown field",
        f"{p0}.operations[6].name: missing",
        f"{acl}.policies[1].namespace: missing (every policy names it)",
        f"{acl}.policies[1].trustDomain: missing (every policy names it)",
        f"{acl}.policies[3].appId: invalid app ID 'Bad.Id': use 1 to 63 letters, digits, '-'"
        " or '_', starting with a letter or digit (no dots or slashes): no caller's SPIFFE ID"
        " can match it",
        f"{acl}.policies[4]: expected a mapping, got a list",
    ]


def test_repeated_policy_and_operation_are_problems(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
  accessControl:
    defaultAction: allow
    policies:
    - appId: app1
      namespace: default
      trustDomain: public
      operations:
      - {name: /op1, action: allow}
      - {name: op1, action: deny}
""",
    )
    assert found == [
        'spec.accessControl.policies[0].operations[1].name: "/op1" is already given at'
        " spec.accessControl.policies[0].operations[0]",
    ]
    found = problems(
        tmp_path,
        """\
  accessControl:
    policies:
    - {appId: app1, namespace: default, trustDomain: public}
    - {appId: app1, namespace: default, trustDomain: other}
    - {appId: app1, namespace: other, trustDomain: public}
""",
    )
    assert found == [
        'spec.accessControl.policies[1]: app "app1" in namespace "default" already has a policy'
        " at spec.accessControl.policies[0]: merge them into one",
    ]


def test_config_check_reports_all_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        HEADER
        + "  accessControl:\n    policies:\n"
        + "    - {appId: app1, namespace: default, trustDomain: public,"
        + " operations: [{name: /op1, httpVerb: [GET], action: allow}]}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEADER + "  accessControl: {defaultAction: maybe}\n  secrets: {}\n")
    report = check_configurations([good, bad])
    assert report.problems == [
        f'{bad}: spec.accessControl.defaultAction: expected allow or deny, got "maybe"',
        f"{bad}: spec.secrets: not supported yet by tether",
    ]
    assert len(report.notes) == 1
    assert report.notes[0].startswith(f"{good}: spec.accessControl.defaultAction: not set")
    assert report.summary[0] == f"ok: appconfig ({good})"
    assert "  access control: default deny, trust domain public, 1 policy" in report.summary
    assert (
        "    app app1 (namespace default, trust domain public): default (the global default);"
        " /op1 [GET] allow" in report.summary
    )
