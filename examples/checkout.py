"""The checkout service of the demo: calls orders by app ID through its own
sidecar (DAPR_HTTP_PORT), exactly as a Dapr SDK would, then exits."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

SIDECAR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}"


def invoke(verb: str, method: str, body: object | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{SIDECAR}/v1.0/invoke/orders/method/{method}",
        data=data,
        method=verb,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def main() -> int:
    failures = 0
    for item in ("book", "lamp", "kettle"):
        status, created = invoke("POST", "neworder", {"item": item})
        print(f"checkout: POST neworder {item} -> {status} {created}", flush=True)
        failures += status != 201
        if status == 201:
            order_id = created["id"]  # type: ignore[index]
            status, fetched = invoke("GET", f"orders/{order_id}")
            print(f"checkout: GET orders/{order_id} -> {status} {fetched}", flush=True)
            failures += status != 200
    status, missing = invoke("GET", "orders/999")
    print(f"checkout: GET orders/999 -> {status} {missing} (the app's 404 passes through)")
    print("checkout: done" if not failures else f"checkout: {failures} calls failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
