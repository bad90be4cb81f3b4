"""A caller written against the official Dapr Python SDK, and nothing of tether.

Usage: python sdk_caller.py APP_ID METHOD [METHOD ...]

The SDK finds the sidecar through its own environment variables
(DAPR_HTTP_PORT, DAPR_API_TOKEN, ...), exactly as it would find daprd. Every
METHOD is invoked with POST, body {"a":1} and the header x-custom: v. Prints
one JSON document on stdout: a list with, per call, either what the SDK
returned (status, data, headers, content type) or the fields of the exception
it raised.
"""

from __future__ import annotations

import base64
import json
import sys

from dapr.clients import DaprClient

BODY = b'{"a":1}'


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")


def call(client: DaprClient, app_id: str, method: str) -> dict[str, object]:
    try:
        response = client.invoke_method(
            app_id=app_id,
            method_name=method,
            data=BODY,
            http_verb="POST",
            metadata=(("x-custom", "v"),),
        )
    except Exception as exc:  # the point is to report whatever the SDK raises
        fields: dict[str, object] = {
            "method": method,
            "raised": type(exc).__name__,
            "module": type(exc).__module__,
            "str": str(exc),
        }
        for name in ("status_code", "reason", "error_code"):
            value = getattr(exc, name, None)
            if callable(value):
                value = value()
            fields[name] = value if value is None else str(value)
        as_dict = getattr(exc, "as_dict", None)
        if callable(as_dict):
            details = as_dict()
            fields["message"] = details.get("message")
            fields["errorCode"] = details.get("errorCode")
            fields["raw"] = _text(details.get("raw_response_bytes"))
        return fields
    headers: dict[str, list[str | None]] = {}
    for key, values in response.headers.items():
        for value in values:
            text = _text(value) if isinstance(value, bytes) else value
            headers.setdefault(key.lower(), []).append(text)
    return {
        "method": method,
        "status": response.status_code,
        "data": _text(response.data),
        "content_type": response.content_type,
        "headers": headers,
    }


def main() -> None:
    app_id, methods = sys.argv[1], sys.argv[2:]
    # Constructing the client blocks on GET /v1.0/healthz/outbound.
    with DaprClient() as client:
        results = [call(client, app_id, method) for method in methods]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
