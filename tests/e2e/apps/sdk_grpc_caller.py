"""A caller written against the official Dapr Python SDK over gRPC, and nothing of tether.

Usage: python sdk_grpc_caller.py APP_ID STEP [STEP ...]

The SDK finds the sidecar through its own environment variables (DAPR_GRPC_PORT,
DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc, DAPR_API_TOKEN, ...), exactly as it would
find daprd. A STEP is "metadata" (DaprClient.get_metadata), "state" (get_state: a
Dapr API tether does not serve), "noverb" (invoke_method without http_verb), or a
method invoked with POST, body {"a":1}, the query a=b and the metadata x-custom: v.
Prints one JSON document on stdout: a list with, per step, what the SDK returned or
the fields of the gRPC error it raised.
"""

from __future__ import annotations

import json
import sys
import warnings

import grpc
from dapr.clients import DaprClient
from grpc_status import rpc_status

BODY = b'{"a":1}'


def _error(step: str, exc: Exception) -> dict[str, object]:
    fields: dict[str, object] = {"step": step, "raised": type(exc).__name__}
    code = getattr(exc, "code", None)
    if callable(code):
        fields["code"] = code().name
        fields["details"] = exc.details()  # type: ignore[attr-defined]
    if isinstance(exc, grpc.Call):
        fields["initial_metadata"] = [list(kv) for kv in exc.initial_metadata() or ()]
        status = rpc_status.from_call(exc)
        if status is not None:
            from google.rpc import error_details_pb2

            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    fields["error_info"] = {
                        "reason": info.reason,
                        "domain": info.domain,
                        "metadata": dict(info.metadata),
                    }
    return fields


def step(client: DaprClient, app_id: str, name: str) -> dict[str, object]:
    try:
        if name == "metadata":
            metadata = client.get_metadata()
            return {"step": name, "id": metadata.application_id}
        if name == "state":
            client.get_state("statestore", "key")
            return {"step": name}
        if name == "noverb":  # no HTTP extension: daprd's HTTP channel refuses it
            client.invoke_method(app_id=app_id, method_name="noverb", data=BODY)
            return {"step": name}
        response = client.invoke_method(
            app_id=app_id,
            method_name=name,
            data=BODY,
            content_type="application/json",
            http_verb="POST",
            http_querystring=(("a", "b"),),
            metadata=(("x-custom", "v"),),
        )
    except Exception as exc:  # the point is to report whatever the SDK raises
        return _error(name, exc)
    headers = {
        key.lower(): [v if isinstance(v, str) else repr(v) for v in values]
        for key, values in response.headers.items()
    }
    return {
        "step": name,
        "data": response.data.decode("utf-8", "replace"),
        "content_type": response.content_type,
        "headers": {
            k: [v if isinstance(v, str) else repr(v) for v in vs] for k, vs in headers.items()
        },
    }


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    app_id, steps = sys.argv[1], sys.argv[2:]
    # Constructing the client blocks on GET /v1.0/healthz/outbound (HTTP), as with daprd.
    with DaprClient() as client:
        results = [step(client, app_id, name) for name in steps]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
