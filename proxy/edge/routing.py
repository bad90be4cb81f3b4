"""Which API a request on the HTTP port is for, and for invocations which app
and method it targets. Pure: takes the request line and headers, returns a
plain decision (Dapr's ``findTargetIDAndMethod`` order)."""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from urllib.parse import unquote

from proxy.core.method_path import normalize_method

INVOKE_PREFIX = "/v1.0/invoke/"
_METHOD_MARK = "/method/"


class Api(enum.Enum):
    INVOKE = "invoke"
    HEALTHZ = "healthz"
    HEALTHZ_OUTBOUND = "healthz_outbound"
    METADATA = "metadata"
    SHUTDOWN = "shutdown"
    NO_APP_ID = "no_app_id"


@dataclass(frozen=True, slots=True)
class Route:
    api: Api
    # For INVOKE only: the raw target id (``app`` or ``app.namespace``), the
    # normalised method, and which request header carried the id (to strip it).
    target_id: str = ""
    method: str = ""
    query: str = ""
    id_header: bytes = b""


_API_ROUTES = {
    ("GET", "/v1.0/healthz"): Api.HEALTHZ,
    ("GET", "/v1.0/healthz/outbound"): Api.HEALTHZ_OUTBOUND,
    ("GET", "/v1.0/metadata"): Api.METADATA,
    ("POST", "/v1.0/shutdown"): Api.SHUTDOWN,
}


def route_request(
    verb: str, target: str, app_id_header: str | None, authorization: str | None
) -> Route:
    """Decide what a request is. ``target`` is the raw request-target (path and query).

    Raises InvalidMethod for a method with forbidden bytes.
    """
    path, _, query = target.partition("?")
    api = _API_ROUTES.get((verb, path))
    if api is not None:
        return Route(api)
    if app_id_header:
        return Route(Api.INVOKE, app_id_header, normalize_method(path), query, b"dapr-app-id")
    basic_id = _app_id_from_basic_auth(authorization)
    if basic_id:
        return Route(Api.INVOKE, basic_id, normalize_method(path), query, b"authorization")
    if path.startswith(INVOKE_PREFIX):
        rest = path[len(INVOKE_PREFIX) :]
        raw_id, mark, method = rest.partition(_METHOD_MARK)
        if not mark and rest.endswith("/method"):
            raw_id, method = rest[: -len("/method")], ""
            mark = _METHOD_MARK
        if mark and raw_id:
            return Route(Api.INVOKE, unquote(raw_id), normalize_method(method), query)
    return Route(Api.NO_APP_ID)


def _app_id_from_basic_auth(authorization: str | None) -> str:
    if not authorization or authorization[:6].lower() != "basic ":
        return ""
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    user, sep, password = decoded.partition(":")
    if not sep or user.lower() != "dapr-app-id":
        return ""
    return password
