"""``spec.accessControl`` of a Dapr Configuration: which calling apps may invoke which
methods of this app (Dapr's service-invocation allow list).

This module only reads and checks the YAML into a plain, protocol-neutral spec; the
matching (trie, lower-casing in HTTP mode) is built from it in ``proxy.hop.access_control``.

Dapr's rules kept here: a missing or empty section means no access control (allow all);
an empty ``defaultAction`` means deny when policies exist, else allow; a policy needs
``appId``, ``namespace`` and ``trustDomain``; operation names get a leading ``/``.
Where daprd would silently do something other than what the file seems to say, it is a
problem instead: an action other than allow or deny, an operation without ``action``
(Dapr's documentation says allow, daprd denies), a verb daprd never matches (``get``),
a trust domain, namespace or app ID no SPIFFE ID can carry, a name no normalised method
can equal, and a repeated policy or operation (daprd keeps one of them silently).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from certs.errors import InvalidSpiffeId
from certs.spiffe import validate_app_id, validate_namespace, validate_trust_domain
from proxy.core.access_policy import (
    ALLOW,
    ANY_VERB,
    DEFAULT_TRUST_DOMAIN,
    DENY,
    HTTP_VERBS,
    AccessControlSpec,
    AppPolicySpec,
    OperationSpec,
)
from yamlcheck import Problems, show, type_name

_SECTION_KEYS = ("defaultAction", "trustDomain", "policies")
_POLICY_KEYS = ("appId", "namespace", "trustDomain", "defaultAction", "operations")
_OPERATION_KEYS = ("name", "httpVerb", "action")
# A certs.spiffe validator: raises InvalidSpiffeId.
_Check = Callable[[str], None]


def parse_access_control(problems: Problems, value: object) -> AccessControlSpec | None:
    """Read ``spec.accessControl``; None means no access control (everything allowed)."""
    if value is None:
        return None
    field = "spec.accessControl"
    section = problems.mapping(field, value, _SECTION_KEYS)
    if section is None:
        return None
    default = _action(problems, f"{field}.defaultAction", section.get("defaultAction"))
    trust_domain = _identity(
        problems, f"{field}.trustDomain", section.get("trustDomain"), validate_trust_domain
    )
    raw_policies = section.get("policies")
    policies = _policies(problems, f"{field}.policies", raw_policies)
    if not default and not trust_domain and not raw_policies:
        # Dapr: a section with nothing in it is the same as none.
        return None
    given = bool(default)
    if not default:
        default = DENY if raw_policies else ALLOW
    return AccessControlSpec(default, trust_domain or DEFAULT_TRUST_DOMAIN, policies, given)


def _policies(problems: Problems, field: str, value: object) -> tuple[AppPolicySpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(field, f"expected a list of policies, got {type_name(value)}")
        return ()
    policies: list[AppPolicySpec] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(value):
        at = f"{field}[{index}]"
        policy = _policy(problems, at, item)
        if policy is None:
            continue
        key = (policy.app_id, policy.namespace)
        if key in seen:
            problems.add(
                at,
                f"app {show(policy.app_id)} in namespace {show(policy.namespace)} already has "
                f"a policy at {field}[{seen[key]}]: merge them into one",
            )
            continue
        seen[key] = index
        policies.append(policy)
    return tuple(policies)


def _policy(problems: Problems, field: str, value: object) -> AppPolicySpec | None:
    policy = problems.mapping(field, value, _POLICY_KEYS)
    if policy is None:
        return None
    before = len(problems)
    app_id = _required(problems, field, policy, "appId", validate_app_id)
    namespace = _required(problems, field, policy, "namespace", validate_namespace)
    trust_domain = _required(problems, field, policy, "trustDomain", validate_trust_domain)
    default = _action(problems, f"{field}.defaultAction", policy.get("defaultAction"))
    operations = _operations(problems, f"{field}.operations", policy.get("operations"))
    if len(problems) > before:
        return None
    return AppPolicySpec(app_id, namespace, trust_domain, default, operations)


def _required(
    problems: Problems, field: str, policy: dict[str, Any], key: str, check: _Check
) -> str:
    if policy.get(key) in (None, ""):
        # Dapr refuses a policy without these too (the docs' "default public" is not so).
        problems.add(f"{field}.{key}", "missing (every policy names it)")
        return ""
    return _identity(problems, f"{field}.{key}", policy[key], check)


def _identity(problems: Problems, field: str, value: object, check: _Check) -> str:
    """A trust domain, namespace or app ID as a SPIFFE ID carries it ("" when absent)."""
    if value is None:
        return ""
    text = problems.string(field, value)
    if not text:
        return ""
    try:
        check(text)
    except InvalidSpiffeId as exc:
        problems.add(field, f"{exc}: no caller's SPIFFE ID can match it")
        return ""
    return text


def _action(problems: Problems, field: str, value: object) -> str:
    """allow or deny (any case, as Dapr compares); "" when absent."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value.lower() not in (ALLOW, DENY):
        shown = show(value) if isinstance(value, str) else type_name(value)
        problems.add(field, f"expected allow or deny, got {shown}")
        return ""
    return value.lower()


def _operations(problems: Problems, field: str, value: object) -> tuple[OperationSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(field, f"expected a list of operations, got {type_name(value)}")
        return ()
    operations: list[OperationSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        at = f"{field}[{index}]"
        operation = _operation(problems, at, item)
        if operation is None:
            continue
        if operation.name in seen:
            problems.add(
                f"{at}.name",
                f"{show(operation.name)} is already given at {field}[{seen[operation.name]}]",
            )
            continue
        seen[operation.name] = index
        operations.append(operation)
    return tuple(operations)


def _operation(problems: Problems, field: str, value: object) -> OperationSpec | None:
    operation = problems.mapping(field, value, _OPERATION_KEYS)
    if operation is None:
        return None
    before = len(problems)
    name = _operation_name(problems, f"{field}.name", operation.get("name"))
    verbs = _verbs(problems, f"{field}.httpVerb", operation.get("httpVerb"))
    action = ""
    if operation.get("action") in (None, ""):
        problems.add(
            f"{field}.action",
            "missing: give allow or deny (Dapr's documentation says allow, daprd denies)",
        )
    else:
        action = _action(problems, f"{field}.action", operation["action"])
    if len(problems) > before:
        return None
    return OperationSpec(name, verbs, action)


def _operation_name(problems: Problems, field: str, value: object) -> str:
    if value in (None, ""):
        problems.add(field, "missing")
        return ""
    text = problems.string(field, value)
    if text is None:
        return ""
    name = text if text.startswith("/") else "/" + text
    segments = name[1:].split("/")
    if name != "/" and any(s in ("", ".", "..") for s in segments):
        problems.add(
            field,
            f"{show(text)} can never match: methods are normalised, with no empty, "
            "'.' or '..' segments and no trailing '/'",
        )
        return ""
    if any(ch in "?#" or ord(ch) < 0x20 for ch in name):
        problems.add(field, f"{show(text)} can never match: a method holds no '?', '#' or controls")
        return ""
    return name


def _verbs(problems: Problems, field: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(field, f"expected a list of HTTP verbs, got {type_name(value)}")
        return ()
    verbs: list[str] = []
    for index, item in enumerate(value):
        if item == ANY_VERB or item in HTTP_VERBS:
            verbs.append(item)
            continue
        at = f"{field}[{index}]"
        if isinstance(item, str) and item.upper() in HTTP_VERBS:
            problems.add(at, f"{show(item)} never matches: daprd compares verbs as upper case")
        else:
            shown = show(item) if isinstance(item, str) else type_name(item)
            problems.add(at, f'expected one of {", ".join(HTTP_VERBS)} or "*", got {shown}')
    return tuple(verbs)
