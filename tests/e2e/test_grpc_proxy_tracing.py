"""Traces of proxied gRPC calls, collected by a real OTLP receiver (see
test_tracing_otlp.py): the caller sidecar's CLIENT span is a child of the calling
app's ``traceparent``, the callee sidecar's SERVER span a child of that, and the
app behind it gets the callee span's context in its metadata."""

from __future__ import annotations

import secrets
import time

import grpc
from google.protobuf import wrappers_pb2

from tests.e2e.harness import Cluster
from tests.e2e.test_tracing_otlp import ReceivedSpan, Receiver, clean_env, otlp_receiver
from tests.e2e.test_tracing_otlp import tracing_config as write_tracing_config

Text = wrappers_pb2.StringValue
SPAN_NAME = "CallLocal/greeter/tether.test.Greeter/SayHello"


def spans_of(receiver: Receiver, trace_id: bytes) -> list[ReceivedSpan]:
    """Poll (bounded, ~20 s) until both sidecars' spans of the trace arrived."""
    found: list[ReceivedSpan] = []
    for _ in range(100):
        found = [s for s in receiver.spans() if s.span.trace_id == trace_id]
        if {"caller", "greeter"} <= {s.service for s in found if s.span.name == SPAN_NAME}:
            return found
        time.sleep(0.2)
    raise AssertionError(f"spans of the trace not exported: {found}")


def test_proxied_calls_are_traced_across_both_sidecars(cluster: Cluster) -> None:
    clean_env(cluster)
    with otlp_receiver() as (receiver, port):
        config = write_tracing_config(cluster.root / "tracing.yaml", f"127.0.0.1:{port}")
        cluster.certs_init()
        app = cluster.app("greeter", "greeter.py")
        extra = ("--config", str(config))
        cluster.sidecar("greeter", app, extra=(*extra, "--app-protocol", "grpc"))
        caller = cluster.sidecar("caller", extra=extra)
        trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
        traceparent = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
        with grpc.insecure_channel(f"127.0.0.1:{caller.grpc_port}") as channel:
            say_hello = channel.unary_unary(
                "/tether.test.Greeter/SayHello",
                request_serializer=Text.SerializeToString,
                response_deserializer=Text.FromString,
            )
            metadata = (("dapr-app-id", "greeter"), ("traceparent", traceparent))
            assert say_hello(Text(value="t"), metadata=metadata, timeout=30).value == "hello t"
        found = spans_of(receiver, trace_id)

    client = next(s.span for s in found if s.service == "caller" and s.span.name == SPAN_NAME)
    server = next(s.span for s in found if s.service == "greeter" and s.span.name == SPAN_NAME)
    assert client.parent_span_id == parent_id
    assert server.parent_span_id == client.span_id
    # The app got the callee span's context, in place of the calling app's.
    entry = next(e for e in app.received() if e["method"] == "SayHello")
    seen = dict(entry["metadata"])
    assert seen["traceparent"] == f"00-{trace_id.hex()}-{server.span_id.hex()}-01"
