"""Normalisation of an invocation's method path, done once at the edge.

The single normalised form is what routing, forwarding (and later access
control, metric labels and breaker keys) all see, so they can never disagree
about which method is being called (Dapr's GHSA-85gx-3qv6-4463 was exactly such
a disagreement). Percent-escapes are never decoded: ``%2F`` stays three bytes
and can not become a separator, ``%252F`` stays as it is.
"""

from __future__ import annotations

from proxy.core.errors import InvalidMethod

_FORBIDDEN = frozenset("#?\x7f") | frozenset(chr(c) for c in range(0x20))


def normalize_method(raw: str) -> str:
    """Return the canonical method (no leading slash) or raise InvalidMethod.

    Rules follow Dapr's ``pkg/messaging/method/normalize.go``: reject ``#``,
    ``?``, NUL and control bytes; then clean the path like Go's ``path.Clean``
    (collapse ``//``, remove ``.``, resolve ``..`` without climbing above the
    root); ``.`` and ``..`` alone become the empty method.
    """
    for ch in raw:
        if ch in _FORBIDDEN:
            raise InvalidMethod(f"method contains a forbidden character {ch!r}")
    segments: list[str] = []
    for segment in raw.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/".join(segments)
