"""A minimal OTLP/gRPC trace receiver that accepts and counts spans, so a
benchmark with tracing on pays for real exports. Loopback only.

    python -m bench.otlp_sink PORT   (prints the span count on SIGTERM/SIGINT)
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self._lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> None:
    port = int(sys.argv[1])
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    # The generated registration function carries no annotations.
    register: Any = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    register(sink, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1)
    print(f"otlp sink received {sink.spans} spans", flush=True)


if __name__ == "__main__":
    main()
