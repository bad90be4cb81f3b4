"""SPIFFE IDs of the form ``spiffe://<trust-domain>/ns/<namespace>/<app-id>``, as Dapr uses."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from certs.errors import InvalidSpiffeId

_SCHEME = "spiffe://"
# One DNS-label-like token: it becomes a path segment of the URI SAN and a label of the DNS SAN.
_TOKEN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}")
# SPIFFE allows only lower-case letters, digits, dots, dashes and underscores in a trust domain.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
PEER_NAME_SUFFIX = "tether.internal"


def validate_app_id(app_id: str) -> None:
    """Raise InvalidSpiffeId unless ``app_id`` is one DNS-label-like token."""
    _validate_token(app_id, "app ID")


def validate_namespace(namespace: str) -> None:
    """Raise InvalidSpiffeId unless ``namespace`` is one DNS-label-like token."""
    _validate_token(namespace, "namespace")


def validate_trust_domain(trust_domain: str) -> None:
    """Raise InvalidSpiffeId unless ``trust_domain`` is a valid SPIFFE trust domain name."""
    if not _TRUST_DOMAIN.fullmatch(trust_domain) or trust_domain.strip(".") != trust_domain:
        raise InvalidSpiffeId(
            f"invalid trust domain {trust_domain!r}: use lower-case letters, digits, '.', '-' "
            "and '_' (at most 255 characters, not starting or ending with '.')"
        )


def _validate_token(value: str, what: str) -> None:
    if not _TOKEN.fullmatch(value):
        raise InvalidSpiffeId(
            f"invalid {what} {value!r}: use 1 to 63 letters, digits, '-' or '_', "
            "starting with a letter or digit (no dots or slashes)"
        )


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    app_id: str

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        validate_namespace(self.namespace)
        validate_app_id(self.app_id)

    def __str__(self) -> str:
        return f"{_SCHEME}{self.trust_domain}/ns/{self.namespace}/{self.app_id}"

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse ``spiffe://<td>/ns/<ns>/<app-id>``; anything else raises InvalidSpiffeId."""
        # Split by hand: urllib would quietly accept ports, user info, queries and fragments.
        if not uri.startswith(_SCHEME):
            raise InvalidSpiffeId(f"not a SPIFFE ID (must start with {_SCHEME!r}): {uri!r}")
        parts = uri[len(_SCHEME) :].split("/")
        if len(parts) != 4 or parts[1] != "ns":
            raise InvalidSpiffeId(
                f"not a tether SPIFFE ID (expected spiffe://<trust-domain>/ns/<namespace>/"
                f"<app-id>): {uri!r}"
            )
        trust_domain, _, namespace, app_id = parts
        try:
            return cls(trust_domain, namespace, app_id)
        except InvalidSpiffeId as exc:
            raise InvalidSpiffeId(f"{exc} in SPIFFE ID {uri!r}") from exc

    def peer_name(self) -> str:
        """The DNS SAN naming this namespace and app ID, exactly, in any trust domain.

        grpc-python cannot check URI SANs on the client, so callers check this name
        instead (``grpc.ssl_target_name_override``); our issuer always puts it in the
        same certificate as the URI SAN, so it carries the same ``/ns/<ns>/<app>`` claim.
        DNS names compare without regard to case, app IDs with it: so the name is a
        digest of the exact ``/ns/<ns>/<app>`` (base32, one valid DNS label), and
        "Orders" never passes for "orders". The trust domain is left out: a caller
        knows the callee's namespace and app ID, not its trust domain (as Dapr's).
        """
        path = f"/ns/{self.namespace}/{self.app_id}".encode()
        label = base64.b32encode(hashlib.sha256(path).digest()).decode("ascii").rstrip("=")
        return f"id-{label.lower()}.{PEER_NAME_SUFFIX}"

    def exact_name(self) -> str:
        """A DNS name for this whole SPIFFE ID, trust domain included: where the caller
        knows all of it (a sidecar pinning its Sentry) it pins this instead."""
        label = base64.b32encode(hashlib.sha256(str(self).encode()).digest()).decode("ascii")
        return f"sid-{label.rstrip('=').lower()}.{PEER_NAME_SUFFIX}"
