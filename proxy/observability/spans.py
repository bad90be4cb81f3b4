"""Dapr's span shapes for service invocation: span names and attributes, as plain values.

Kept apart from the tracer so what a span says (Dapr's names, the OpenTelemetry
semantic conventions) reads without the machinery that exports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

SERVICE_INVOCATION = "ServiceInvocation"

# Headers that carry credentials never become span attributes.
_SECRET_HEADERS = frozenset({"dapr-api-token", "dapr-app-token"})
# gRPC codes that make a SERVER span an error (OpenTelemetry semantic conventions):
# UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
_GRPC_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})

AttributeValue = str | int
# How a call's outcome is coded: an HTTP status, or a gRPC status code.
CallProtocol = Literal["grpc", "http"]


def call_local_span_name(app_id: str, method: str) -> str:
    """Dapr's span name for an invocation: ``CallLocal/<app-id>/<method>``."""
    return f"CallLocal/{app_id}/{method}"


def caller_span_attributes(
    target_app_id: str,
    verb: str,
    path: str,
    *,
    url_full: str = "",
    server_address: str = "",
    server_port: int | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> dict[str, AttributeValue]:
    """Attributes of the caller's CLIENT span for an HTTP API invocation.

    ``path`` is the request path as the app sent it; ``headers`` are the request
    headers, of which every ``dapr-*`` one except the API and app tokens is kept.
    """
    attributes: dict[str, AttributeValue] = {
        "rpc.service": SERVICE_INVOCATION,
        "net.peer.name": target_app_id,
        "dapr.protocol": "http",
        "dapr.api": f"{verb} {path}",
        "http.request.method": verb,
    }
    if url_full:
        attributes["url.full"] = url_full
    if server_address:
        attributes["server.address"] = server_address
    if server_port is not None:
        attributes["server.port"] = server_port
    for name, value in headers:
        key = name.lower()
        if key.startswith("dapr-") and key not in _SECRET_HEADERS:
            attributes[key] = value
    return attributes


def peer_attributes(host: str, port: int) -> dict[str, AttributeValue]:
    """The instance of the target app a call went to, set on the caller's CLIENT span
    (``net.peer.name`` stays the app ID, as Dapr sets it)."""
    return {
        "server.address": host,
        "server.port": port,
        "network.peer.address": host,
        "network.peer.port": port,
    }


def callee_span_attributes(method: str, *, api: str) -> dict[str, AttributeValue]:
    """Attributes of the callee's SERVER span; ``api`` is the gRPC method that carried it."""
    return {
        "rpc.service": SERVICE_INVOCATION,
        "dapr.invoke_method": method,
        "dapr.api": api,
        "dapr.protocol": "grpc",
    }


def status_attribute(code: int, protocol: CallProtocol) -> tuple[str, int]:
    """The attribute that records a call's outcome: ``dapr.status_code`` or gRPC's."""
    return ("dapr.status_code" if protocol == "http" else "rpc.grpc.status_code"), code


def is_error(code: int, protocol: CallProtocol, *, server: bool) -> bool:
    """Whether the outcome makes the span an error (OpenTelemetry semantic conventions).

    A client fails on any 4xx/5xx or non-OK code; a server only on its own faults.
    """
    if protocol == "http":
        return code >= 500 or (code >= 400 and not server)
    return code in _GRPC_SERVER_ERRORS if server else code != 0
