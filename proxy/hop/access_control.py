"""Dapr's service-invocation access control, decided on the callee: pure, no I/O.

Built once from ``spec.accessControl`` (a ``proxy.core.access_policy`` spec), then asked
per call with the caller's verified identity (None without one: mTLS off, or no usable
certificate), the normalised method and the HTTP verb. The rules are daprd's
(``pkg/acl``, ``pkg/config/acl_trie.go``), quirks included, so a policy decides here as it
does there:

1. no verified identity, no policy for ``appId`` + namespace, or another trust domain:
   the global ``defaultAction``;
2. else the policy's ``defaultAction`` when it sets one;
3. then the first operation whose name matches the method (segment by segment, in file
   order: ``/*`` is one segment, or none at the end; ``/**`` the rest; ``*`` inside a
   segment any characters; a name also covers the methods below it). In HTTP mode the
   verb's action, else ``*``'s; a call without a verb takes the policy's default. In gRPC
   mode the operation's action.

In HTTP mode names and methods compare lower-cased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from proxy.core.access_policy import ALLOW, ANY_VERB, AccessControlSpec, AppPolicySpec
from proxy.core.errors import InvalidMethod
from proxy.core.method_path import normalize_method
from proxy.hop.header_rules import CallerIdentity

ONE_SEGMENT = "/*"
ALL_BELOW = "/**"
NO_VERB = "NONE"
# Which default decided (the metric families' ``app`` and ``global``).
BY_APP = "app"
BY_GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    by: str


@dataclass(frozen=True, slots=True)
class _Rule:
    verbs: frozenset[str]
    action: str


@dataclass(slots=True)
class _Node:
    segment: str  # with its leading "/"
    rule: _Rule | None = None
    children: list[_Node] = field(default_factory=list)
    glob: re.Pattern[str] | None = None


def _glob(segment: str) -> re.Pattern[str] | None:
    """A segment with ``*`` in it (other than the whole-segment wildcards) as a pattern."""
    if "*" not in segment or segment in (ONE_SEGMENT, ALL_BELOW):
        return None
    return re.compile(".*".join(re.escape(part) for part in segment.split("*")), re.DOTALL)


def _find(children: list[_Node], segment: str, at_end: bool) -> _Node | None:
    """The first child (in file order) that takes ``segment``, as daprd's trie picks it."""
    for node in children:
        if node.segment == segment:
            return node
        if node.segment == ONE_SEGMENT:
            if at_end:
                return node
            continue
        if node.segment == ALL_BELOW:
            return node
        if node.glob is not None and node.glob.fullmatch(segment):
            return node
    return None


class _Trie:
    def __init__(self) -> None:
        self._root = _Node("/")

    def put(self, name: str, rule: _Rule) -> None:
        """Add ``name`` (starting with "/"); a name given twice keeps its first rule."""
        parts = name.split("/")
        last = len(parts) - 1
        node = self._root
        for index in range(1, len(parts)):
            segment = "/" + parts[index]
            child = next((c for c in node.children if c.segment == segment), None)
            if child is None:
                child = _Node(segment, rule if index == last else None, glob=_glob(segment))
                node.children.append(child)
            elif index == last and child.rule is None:
                child.rule = rule
            node = child

    def search(self, operation: str) -> _Rule | None:
        parts = operation.split("/")
        last = len(parts) - 1
        node: _Node | None = self._root
        for index in range(1, len(parts)):
            at_end = index == last
            assert node is not None
            node = _find(node.children, "/" + parts[index], at_end)
            if node is None:
                return None
            if node.rule is not None:
                if not at_end and node.segment == ONE_SEGMENT:
                    continue
                return node.rule
            if at_end:
                # "/op/*" and "/op/**" also cover "/op" itself.
                star = _find(node.children, ONE_SEGMENT, True)
                if star is not None and star.rule is not None:
                    return star.rule
        return None


@dataclass(frozen=True, slots=True)
class _Policy:
    trust_domain: str
    default_action: str
    operations: _Trie


class AccessControl:
    """A compiled ``spec.accessControl``; ``http``: the app protocol is HTTP."""

    def __init__(self, spec: AccessControlSpec, *, http: bool) -> None:
        self.default_action = spec.default_action
        self.http = http
        self._policies = {
            (policy.app_id, policy.namespace): self._compile(policy) for policy in spec.policies
        }

    def _compile(self, policy: AppPolicySpec) -> _Policy:
        trie = _Trie()
        for operation in policy.operations:
            name = operation.name.lower() if self.http else operation.name
            trie.put(name, _Rule(frozenset(operation.verbs), operation.action))
        return _Policy(policy.trust_domain, policy.default_action, trie)

    def check(self, caller: CallerIdentity | None, method: str, verb: str) -> Decision:
        """May ``caller`` call ``method`` (normalised) with ``verb`` (``NONE``: no verb)?"""
        action, by = self.default_action, BY_GLOBAL
        if caller is None:
            return Decision(action == ALLOW, by)
        policy = self._policies.get((caller.app_id, caller.namespace))
        if policy is None or policy.trust_domain != caller.trust_domain:
            return Decision(action == ALLOW, by)
        if policy.default_action:
            # daprd labels a decision "app" only here: an operation's action taken under
            # a policy without its own default still counts as "global" (kept for dashboards).
            action, by = policy.default_action, BY_APP
        operation = method if method.startswith("/") else "/" + method
        if self.http:
            operation = operation.lower()
        rule = policy.operations.search(operation)
        if rule is not None:
            if not self.http:
                action = rule.action
            elif verb == NO_VERB:
                action = policy.default_action
            elif verb in rule.verbs or ANY_VERB in rule.verbs:
                action = rule.action
        return Decision(action == ALLOW, by)

    def judge(self, caller: CallerIdentity | None, method: str, verb: str) -> Decision:
        """``check`` on the method as forwarded and, when it holds escapes, as an app
        that percent-decodes its path would route it: both must be allowed.

        The app is called with ``method`` as it is (``%2F`` stays three bytes), but
        many HTTP frameworks decode before routing, where ``admin%2Fkeys`` becomes
        ``admin/keys``; daprd decodes before judging. A decoded reading that is no
        valid method (an escaped ``?`` or control byte) is denied.
        """
        decision = self.check(caller, method, verb)
        if not decision.allowed or "%" not in method:
            return decision
        try:
            decoded = normalize_method(unquote(method, errors="strict"))
        except (InvalidMethod, UnicodeDecodeError):
            return Decision(False, decision.by)
        return self.check(caller, decoded, verb)


def access_control_for(
    spec: AccessControlSpec | None, app_protocol: str, mtls: bool
) -> tuple[AccessControl | None, list[str]]:
    """The compiled policy (None: no access control) and what the logs should warn of."""
    if spec is None:
        return None, []
    warnings = spec.notes()
    if not mtls:
        warnings.append(
            "access control is configured but mTLS is off: no caller proves who it is, "
            f"so every call gets the global default action ({spec.default_action})"
        )
    return AccessControl(spec, http=app_protocol == "http"), warnings


def caller_spiffe_id(caller: CallerIdentity | None) -> str:
    """The caller's SPIFFE ID as daprd's deny message shows it ("" without one)."""
    if caller is None:
        return ""
    return f"spiffe://{caller.trust_domain}/ns/{caller.namespace}/{caller.app_id}"


def denied_message(caller: CallerIdentity | None, method: str, verb: str) -> str:
    """daprd's PermissionDenied text (``method`` as the request gave it, normalised)."""
    return (
        f"access control policy has denied access to id: {caller_spiffe_id(caller)} "
        f"operation: {method} verb: {verb}"
    )
