"""A caller of a gRPC app (--app-protocol grpc), written against the official Dapr
Python SDK and grpcio, and nothing of tether.

Usage: python sdk_grpc_app_caller.py APP_ID STEP [STEP ...]

The SDK finds the sidecar through its own environment (DAPR_HTTP_PORT,
DAPR_GRPC_PORT, DAPR_API_METHOD_INVOCATION_PROTOCOL, DAPR_API_TOKEN), as with daprd.
A STEP is a method name, called with ``DaprClient.invoke_method`` as the SDK's
gRPC-app examples do (data, content type, no HTTP verb); ``METHOD*N`` makes N such
calls at once; ``raw:METHOD`` calls InvokeService with grpcio's generated stub (a
plain gRPC client), to see the header and trailer metadata. Prints one JSON
document: per step, what came back or the fields of the error raised.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import grpc
from dapr.clients import DaprClient
from grpc_status import rpc_status

BODY = b'{"a":1}'


def _pairs(metadata: object) -> list[list[str]]:
    return [[k, v if isinstance(v, str) else "bin"] for k, v in metadata or ()]  # type: ignore[attr-defined]


def _error(exc: Exception) -> dict[str, object]:
    fields: dict[str, object] = {"raised": type(exc).__name__, "str": str(exc)}
    code = getattr(exc, "code", None)
    if callable(code):
        fields["code"] = code().name
        fields["details"] = exc.details()  # type: ignore[attr-defined]
    if isinstance(exc, grpc.Call):
        fields["initial_metadata"] = _pairs(exc.initial_metadata())
        fields["trailing_metadata"] = _pairs(exc.trailing_metadata())
        status = rpc_status.from_call(exc)
        if status is not None:
            from google.rpc import error_details_pb2

            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    fields["error_info"] = {"reason": info.reason, "domain": info.domain}
    status_code = getattr(exc, "status_code", None)
    if status_code is not None:
        fields["status_code"] = status_code
    as_dict = getattr(exc, "as_dict", None)
    if callable(as_dict):
        raw = as_dict().get("raw_response_bytes")
        if isinstance(raw, bytes):
            fields["raw"] = raw.decode("utf-8", "replace")
    return fields


def invoke(client: DaprClient, app_id: str, method: str) -> dict[str, object]:
    try:
        response = client.invoke_method(
            app_id=app_id, method_name=method, data=BODY, content_type="application/json"
        )
    except Exception as exc:  # the point is to report whatever the SDK raises
        return _error(exc)
    headers = {
        key.lower(): [v if isinstance(v, str) else "bin" for v in values]
        for key, values in response.headers.items()
    }
    return {
        "data": response.data.decode("utf-8", "replace"),
        "content_type": response.content_type,
        "headers": headers,
        "status_code": getattr(response, "status_code", None),
    }


def raw(app_id: str, method: str) -> dict[str, object]:
    from dapr.proto import api_service_v1, api_v1, common_v1

    port = os.environ["DAPR_GRPC_PORT"]
    metadata = []
    if os.environ.get("DAPR_API_TOKEN"):
        metadata.append(("dapr-api-token", os.environ["DAPR_API_TOKEN"]))
    request = api_v1.InvokeServiceRequest(
        id=app_id,
        message=common_v1.InvokeRequest(method=method, content_type="application/json"),
    )
    request.message.data.value = BODY
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = api_service_v1.DaprStub(channel)
        try:
            response, call = stub.InvokeService.with_call(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return _error(exc)
    return {
        "data": response.data.value.decode("utf-8", "replace"),
        "content_type": response.content_type,
        "initial_metadata": _pairs(call.initial_metadata()),
        "trailing_metadata": _pairs(call.trailing_metadata()),
    }


def step(client: DaprClient, app_id: str, name: str) -> object:
    if name.startswith("raw:"):
        return raw(app_id, name[4:])
    method, _, count = name.partition("*")
    if count:
        with ThreadPoolExecutor(int(count)) as pool:
            return list(pool.map(lambda _: invoke(client, app_id, method), range(int(count))))
    return invoke(client, app_id, method)


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    app_id, steps = sys.argv[1], sys.argv[2:]
    with DaprClient() as client:
        results = [step(client, app_id, name) for name in steps]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
