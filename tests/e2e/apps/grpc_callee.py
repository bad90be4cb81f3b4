"""A gRPC app behind a sidecar started with --app-protocol grpc (or grpcs), and
nothing of tether.

Usage:
  python grpc_callee.py sdk PORT RECORD
      The Python SDK's ``dapr.ext.grpc.App``. Methods: ``hello`` (answers JSON with
      what it received, and a response header), ``boom`` (raises), ``slow`` (takes
      0.3 s). Its health check fails while the file RECORD + ".sick" exists.
  python grpc_callee.py plain PORT RECORD [CERT KEY]
      A plain grpcio server of Dapr's AppCallback (TLS with CERT and KEY: grpcs).
      Methods: ``hello`` (header and trailer metadata besides its answer), ``bad``
      (INVALID_ARGUMENT with an ErrorInfo detail and a trailer).

Every OnInvoke appends one JSON line to RECORD: the method, its data, content type,
HTTP extension, the metadata seen, and how many calls were in flight with it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc

RECORD_LOCK = threading.Lock()
IN_FLIGHT = [0]


def record(path: str, entry: dict[str, object]) -> None:
    with RECORD_LOCK, open(path, "a") as out:
        out.write(json.dumps(entry) + "\n")


class Flight:
    """Counts the calls in progress at the app (for --app-max-concurrency)."""

    def __enter__(self) -> int:
        with RECORD_LOCK:
            IN_FLIGHT[0] += 1
            return IN_FLIGHT[0]

    def __exit__(self, *_: object) -> None:
        with RECORD_LOCK:
            IN_FLIGHT[0] -= 1


def metadata_dict(metadata: object) -> dict[str, str]:
    """gRPC metadata (pairs, or the SDK's dict of value lists) as key -> first value."""
    pairs = metadata.items() if isinstance(metadata, dict) else metadata or ()
    seen: dict[str, str] = {}
    for key, value in pairs:  # type: ignore[attr-defined]
        if isinstance(value, list | tuple):
            value = value[0]
        seen.setdefault(key, value if isinstance(value, str) else "bin:" + value.hex())
    return seen


def run_sdk(port: int, path: str) -> None:
    from dapr.clients.grpc._response import InvokeMethodResponse
    from dapr.ext.grpc import App

    app = App()

    def entry(method: str, request: object, in_flight: int) -> dict[str, object]:
        return {
            "method": method,
            "data": request.data[:200].decode("utf-8", "replace"),  # type: ignore[attr-defined]
            "length": len(request.data),  # type: ignore[attr-defined]
            "content_type": request.content_type,  # type: ignore[attr-defined]
            "metadata": metadata_dict(request.metadata),  # type: ignore[attr-defined]
            "in_flight": in_flight,
        }

    @app.method(name="hello")
    def hello(request: object) -> InvokeMethodResponse:
        with Flight() as in_flight:
            seen = entry("hello", request, in_flight)
            record(path, seen)
        return InvokeMethodResponse(
            json.dumps(seen).encode(), "application/json", headers=(("x-app-header", "h1"),)
        )

    @app.method(name="boom")
    def boom(request: object) -> bytes:
        record(path, entry("boom", request, 0))
        raise ValueError("kaboom")

    @app.method(name="slow")
    def slow(request: object) -> bytes:
        with Flight() as in_flight:
            record(path, entry("slow", request, in_flight))
            time.sleep(0.3)
        return b"slept"

    def health() -> None:
        if os.path.exists(path + ".sick"):
            raise RuntimeError("sick")

    app.register_health_check(health)
    app.run(port, "127.0.0.1")


def run_plain(port: int, path: str, cert: str | None, key: str | None) -> None:
    from dapr.proto import appcallback_service_v1, appcallback_v1, common_v1
    from google.protobuf.any_pb2 import Any
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from grpc_status import rpc_status

    class Callback(appcallback_service_v1.AppCallbackServicer):  # type: ignore[misc]
        def OnInvoke(self, request: object, context: grpc.ServicerContext) -> object:
            method = request.method  # type: ignore[attr-defined]
            extension = request.http_extension  # type: ignore[attr-defined]
            record(
                path,
                {
                    "method": method,
                    "data": request.data.value[:200].decode("utf-8", "replace"),  # type: ignore[attr-defined]
                    "length": len(request.data.value),  # type: ignore[attr-defined]
                    "content_type": request.content_type,  # type: ignore[attr-defined]
                    "verb": extension.verb,
                    "query": extension.querystring,
                    "metadata": metadata_dict(context.invocation_metadata()),
                    "in_flight": 1,
                },
            )
            context.set_trailing_metadata((("x-app-trailer", "t1"),))
            if method == "bad":
                info = Any()
                info.Pack(error_details_pb2.ErrorInfo(reason="BAD_INPUT", domain="example.com"))
                status = status_pb2.Status(
                    code=code_pb2.INVALID_ARGUMENT, message="bad input", details=[info]
                )
                aborted = rpc_status.to_status(status)
                # The status's own trailing metadata replaces what was set before.
                trailing = (*aborted.trailing_metadata, ("x-app-trailer", "t1"))
                context.abort_with_status(aborted._replace(trailing_metadata=trailing))
            context.send_initial_metadata((("x-app-header", "h1"),))
            response = common_v1.InvokeResponse(content_type="text/plain")
            response.data.value = b"hello from plain"
            return response

    class Health(appcallback_service_v1.AppCallbackHealthCheckServicer):  # type: ignore[misc]
        def HealthCheck(self, request: object, context: grpc.ServicerContext) -> object:
            return appcallback_v1.HealthCheckResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    appcallback_service_v1.add_AppCallbackServicer_to_server(Callback(), server)
    appcallback_service_v1.add_AppCallbackHealthCheckServicer_to_server(Health(), server)
    address = f"127.0.0.1:{port}"
    if cert is not None and key is not None:
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials(((k.read(), c.read()),))
        server.add_secure_port(address, credentials)
    else:
        server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def main() -> None:
    mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "sdk":
        run_sdk(port, path)
    else:
        cert, key = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else (None, None)
        run_plain(port, path, cert, key)


if __name__ == "__main__":
    main()
