"""Dapr's ``kubernetes`` resolver ``template`` (a Go template) turned into tether's name
template, for the subset tether supports: ``{{.ID}}``, ``{{.Namespace}}`` and
``{{.Port}}`` as the port of a ``host:port`` result. Pure; no I/O.

Dapr renders the template into the address to dial, e.g.
``{{.ID}}-dapr.{{.Namespace}}.svc.cluster.local:{{.Port}}``. tether resolves the host
part to its A/AAAA records (every address an instance); the port is ``{{.Port}}`` (the
caller's own internal gRPC port), a number, or absent (the same as ``{{.Port}}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.discovery.dns_names import InvalidTemplate, validate_template

_ACTION = re.compile(r"\{\{(.*?)\}\}")
_FIELDS = {".ID": "{appid}", ".Namespace": "{namespace}"}
_PORT = "{{.Port}}"


@dataclass(frozen=True)
class HostTemplate:
    """``template`` uses ``{appid}`` and ``{namespace}``; ``port`` None means the caller's
    own internal port."""

    template: str
    port: int | None


def convert_go_template(text: str) -> HostTemplate:
    """Convert Dapr's template; raises InvalidTemplate naming what is not supported."""
    source = text.strip()
    if not source:
        raise InvalidTemplate("the template is empty")
    normalized = _ACTION.sub(lambda m: "{{" + m.group(1).strip().lstrip("-").strip() + "}}", source)
    unsupported = [
        "{{" + action + "}}"
        for action in _ACTION.findall(normalized)
        if action not in (".ID", ".Namespace", ".Port")
    ]
    if unsupported:
        raise InvalidTemplate(
            f"{text!r}: {', '.join(unsupported)} is not supported by tether"
            " (supported: {{.ID}}, {{.Namespace}}, and {{.Port}} as the port)"
        )
    host, port = normalized, None
    if normalized.endswith(":" + _PORT):
        host = normalized[: -len(_PORT) - 1]
    elif re.search(r":\d+$", normalized):
        host, _, digits = normalized.rpartition(":")
        port = int(digits)
        if not 1 <= port <= 65535:
            raise InvalidTemplate(f"{text!r}: port {port} is outside 1-65535")
    if _PORT in host:
        raise InvalidTemplate(f"{text!r}: {{{{.Port}}}} may only be the port after the last ':'")
    if "{{.ID}}" not in host:
        raise InvalidTemplate(f"{text!r}: must contain {{{{.ID}}}}")
    for action, field in _FIELDS.items():
        host = host.replace("{{" + action + "}}", field)
    if "{{" in host or "}}" in host or host.count("{") != host.count("}"):
        raise InvalidTemplate(f"{text!r}: unbalanced braces")
    validate_template(host)
    return HostTemplate(host, port)
