"""The access-control policy as data: what ``spec.accessControl`` says, with Dapr's
defaults applied. Read from YAML by ``proxy.config.access_control``, compiled and
evaluated by ``proxy.hop.access_control``."""

from __future__ import annotations

from dataclasses import dataclass

ALLOW = "allow"
DENY = "deny"
DEFAULT_TRUST_DOMAIN = "public"
# Dapr's HTTPExtension verbs a request can carry (NONE means "no verb": never matched).
HTTP_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
ANY_VERB = "*"


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """One ``operations[]`` entry; ``name`` starts with ``/``, ``verbs`` as written."""

    name: str
    verbs: tuple[str, ...]
    action: str


@dataclass(frozen=True, slots=True)
class AppPolicySpec:
    """One ``policies[]`` entry; ``default_action`` is "" when the policy sets none."""

    app_id: str
    namespace: str
    trust_domain: str
    default_action: str
    operations: tuple[OperationSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessControlSpec:
    """The section with Dapr's defaults applied (``default_action`` is allow or deny)."""

    default_action: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    policies: tuple[AppPolicySpec, ...] = ()
    # False when the file left defaultAction out and it was derived (see notes()).
    default_action_given: bool = True

    def notes(self) -> list[str]:
        """What an operator should know that is not a problem."""
        if self.default_action_given or not self.policies:
            return []
        return [
            "spec.accessControl.defaultAction: not set, and policies exist: calls no policy "
            "matches are denied (Dapr's documented rule; set it to make this explicit)"
        ]
