"""Resiliency on proxied gRPC calls: the caller sidecar's policies for the target app
(retry matching gRPC codes, timeout) apply as daprd's do. A call is retried only while
nothing of its answer reached the caller; ``dapr-stream: true`` limits the timeout to
the stream's set-up. Counted at the app (tests/e2e/apps/greeter.py)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

from tests.e2e.harness import App, Cluster, Sidecar

Text = wrappers_pb2.StringValue
SERVICE = "/tether.test.Greeter/"
META = (("dapr-app-id", "greeter"),)

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: grpcproxy}
scopes: [caller]
spec:
  policies:
    timeouts:
      short: 3s
    retries:
      unavailable:
        policy: constant
        duration: 10ms
        maxRetries: 3
        matching: {gRPCStatusCodes: "14"}
  targets:
    apps:
      greeter: {timeout: short, retry: unavailable}
"""


def start(cluster: Cluster, channels: list[grpc.Channel]) -> tuple[App, grpc.Channel]:
    cluster.certs_init()
    resources = cluster.root / "resources"
    resources.mkdir()
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    app = cluster.app("greeter", "greeter.py")
    cluster.sidecar("greeter", app, extra=("--app-protocol", "grpc"))
    caller: Sidecar = cluster.sidecar("caller", extra=("--resources-path", str(resources)))
    channel = grpc.insecure_channel(f"127.0.0.1:{caller.grpc_port}")
    channels.append(channel)
    return app, channel


def unary(channel: grpc.Channel, method: str) -> Any:
    return channel.unary_unary(
        SERVICE + method,
        request_serializer=Text.SerializeToString,
        response_deserializer=Text.FromString,
    )


def streaming(channel: grpc.Channel, method: str) -> Any:
    return channel.unary_stream(
        SERVICE + method,
        request_serializer=Text.SerializeToString,
        response_deserializer=Text.FromString,
    )


def count(app: App, method: str, request: str) -> int:
    return sum(1 for e in app.received() if e["method"] == method and e["request"] == request)


def test_unary_calls_are_retried_on_matching_codes(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, channel = start(cluster, channels)
    flaky = unary(channel, "Flaky")
    # Fails twice, then answers: 1 call + 2 retries, the caller sees the answer.
    assert flaky(Text(value="a:2"), metadata=META, timeout=30).value == "steady a"
    assert count(app, "Flaky", "a:2") == 3
    # Always fails: 1 call + 3 retries, and the caller gets the app's last status.
    with pytest.raises(grpc.RpcError) as raised:
        flaky(Text(value="b:99"), metadata=META, timeout=30)
    error: Any = raised.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "flaky b: 96 failures left"
    assert count(app, "Flaky", "b:99") == 4


def test_client_streams_are_replayed_on_retry(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, channel = start(cluster, channels)
    collect = channel.stream_unary(
        SERVICE + "CollectHellos",
        request_serializer=Text.SerializeToString,
        response_deserializer=Text.FromString,
    )
    names = iter([Text(value=name) for name in ("a", "b", "c", "d")])
    reply = collect(names, metadata=(*META, ("x-flaky", "c:2")), timeout=30)
    # Two attempts failed before reading; the third got every message, in order.
    assert reply.value == "a+b+c+d"
    assert count(app, "CollectHellos.try", "c:2") == 3
    assert [e["count"] for e in app.received() if e["method"] == "CollectHellos"] == [4]


def test_a_call_whose_answer_began_is_never_retried(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, channel = start(cluster, channels)
    replies: list[str] = []
    with pytest.raises(grpc.RpcError) as raised:
        for reply in streaming(channel, "Ticks")(Text(value="2:0:fail"), metadata=META, timeout=30):
            replies.append(reply.value)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert replies == ["tick 0", "tick 1"]
    assert count(app, "Ticks", "2:0:fail") == 1


def test_dapr_stream_limits_the_timeout_to_the_set_up(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, channel = start(cluster, channels)
    ticks = streaming(channel, "Ticks")
    # 6 messages over 5 s: past the 3 s timeout, which only covers the set-up here.
    stream_meta = (*META, ("dapr-stream", "true"))
    replies = [r.value for r in ticks(Text(value="6:1"), metadata=stream_meta, timeout=60)]
    assert replies == [f"tick {n}" for n in range(6)]
    # Without it the timeout covers the whole call, as daprd's does.
    with pytest.raises(grpc.RpcError) as raised:
        list(ticks(Text(value="6:1.0"), metadata=META, timeout=60))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert count(app, "Ticks", "6:1.0") == 1
    # The app's deadline: the caller's, or the policy's timeout when that bounds the call.
    assert 3.5 < remaining(app, "6:1") <= 60.5
    assert 0 < remaining(app, "6:1.0") <= 3.5


def remaining(app: App, request: str) -> float:
    entry = next(e for e in app.received() if e["method"] == "Ticks" and e["request"] == request)
    value = entry["time_remaining"]
    assert isinstance(value, float)
    return value
