"""An app's address in the mesh: its ID and namespace, as a caller names it."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.errors import InvalidAppId


@dataclass(frozen=True, slots=True)
class AppAddress:
    app_id: str
    namespace: str


def split_app_id(target_id: str, local_namespace: str) -> AppAddress:
    """``orders`` is in the caller's namespace; ``orders.prod`` names one.

    More than one dot, or an empty part, is an error (Dapr: ``invalid app id``).
    """
    app_id, dot, namespace = target_id.partition(".")
    if not dot:
        return AppAddress(target_id, local_namespace)
    if not app_id or not namespace or "." in namespace:
        raise InvalidAppId(f"invalid app id: {target_id}")
    return AppAddress(app_id, namespace)
