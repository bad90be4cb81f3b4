"""gRPC proxying ("invoke any gRPC service"), with real sidecars over mTLS: a plain
grpcio client calls its sidecar's Dapr gRPC API port with metadata
``dapr-app-id: greeter``, and the call reaches a plain grpcio server
(tests/e2e/apps/greeter.py, behind a sidecar with ``--app-protocol grpc``) unchanged:
every call kind, metadata both ways, the app's status with rich details, the caller's
deadline and its cancellation; counted at the app. Refusals: an unknown app, an
app whose protocol is http, the API token, access control."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import App, Cluster, Sidecar, free_port, wait_until

Text = wrappers_pb2.StringValue
SERVICE = "/tether.test.Greeter/"
CALL_TIMEOUT = 30.0
# grpcio's grpc-timeout is its deadline rounded up (a few significant digits).
WIRE_ROUNDING = 0.5

GREETER_CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: greeterconfig}
spec:
  accessControl:
    defaultAction: allow
    trustDomain: public
    policies:
    - appId: caller
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - {name: /tether.test.Greeter/Fail, action: deny}
"""


class Greeter:
    """Stubs for greeter.proto, made with grpcio's generic calls."""

    def __init__(self, channel: grpc.Channel) -> None:
        text = {
            "request_serializer": Text.SerializeToString,
            "response_deserializer": Text.FromString,
        }
        self.say_hello = channel.unary_unary(SERVICE + "SayHello", **text)
        self.say_hellos = channel.unary_stream(SERVICE + "SayHellos", **text)
        self.collect_hellos = channel.stream_unary(SERVICE + "CollectHellos", **text)
        self.chat = channel.stream_stream(SERVICE + "Chat", **text)
        self.fail = channel.unary_unary(SERVICE + "Fail", **text)
        self.wait = channel.unary_unary(SERVICE + "Wait", **text)


def greeter_via(sidecar: Sidecar, channels: list[grpc.Channel]) -> Greeter:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{sidecar.grpc_port}",
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    channels.append(channel)
    return Greeter(channel)


def start(
    cluster: Cluster, *, callee_extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> tuple[App, Sidecar, Sidecar]:
    cluster.certs_init()
    app = cluster.app("greeter", "greeter.py")
    callee = cluster.sidecar(
        "greeter", app, extra=("--app-protocol", "grpc", *callee_extra), env=env
    )
    caller = cluster.sidecar("caller", env=env)
    return app, callee, caller


def calls(app: App, method: str) -> list[dict[str, Any]]:
    return [entry for entry in app.received() if entry["method"] == method]


def seen(entry: dict[str, Any]) -> dict[str, list[str]]:
    metadata: dict[str, list[str]] = {}
    for key, value in entry["metadata"]:
        metadata.setdefault(key, []).append(value)
    return metadata


META = (("dapr-app-id", "greeter"), ("x-custom", "v1"), ("x-custom-bin", b"\x00\xff\x10"))


def test_every_call_kind_with_metadata_both_ways(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, callee, caller = start(cluster)
    greeter = greeter_via(caller, channels)

    reply, call = greeter.say_hello.with_call(
        Text(value="ada"), metadata=META, timeout=CALL_TIMEOUT
    )
    assert reply.value == "hello ada"
    initial = dict(call.initial_metadata())
    assert initial["x-app-initial"] == "hello"
    assert initial["x-initial-bin"] == b"\x00\x01\xfe"
    trailing = dict(call.trailing_metadata())
    assert trailing["x-app-trailing"] == "bye"
    assert trailing["x-trailing-bin"] == b"\xff\x00"

    stream = greeter.say_hellos(Text(value="bob:4"), metadata=META, timeout=CALL_TIMEOUT)
    assert [m.value for m in stream] == ["bob 0", "bob 1", "bob 2", "bob 3"]
    assert dict(stream.trailing_metadata())["x-app-trailing"] == "bye"

    names = iter([Text(value="a"), Text(value="b"), Text(value="c")])
    assert greeter.collect_hellos(names, metadata=META, timeout=CALL_TIMEOUT).value == "a+b+c"

    big = "x" * (3 * 1024 * 1024)  # beyond one HTTP/2 window: flow control both ways
    chat = greeter.chat(
        iter([Text(value="hi"), Text(value=big), Text(value="bye")]),
        metadata=META,
        timeout=CALL_TIMEOUT,
    )
    assert [m.value for m in chat] == ["HI", big.upper(), "BYE"]

    # Counted at the app: each call once, with the caller's metadata and the sidecar's.
    for method in ("SayHello", "SayHellos", "CollectHellos", "Chat"):
        entries = calls(app, method)
        assert len(entries) == 1, (method, app.received())
        metadata = seen(entries[0])
        assert metadata["x-custom"] == ["v1"]
        assert metadata["x-custom-bin"] == ["00ff10"]
        assert metadata["dapr-caller-app-id"] == ["caller"]
        assert metadata["dapr-caller-namespace"] == ["default"]
        assert metadata["dapr-callee-app-id"] == ["greeter"]
        assert "dapr-api-token" not in metadata
        # The caller's deadline reached the app, as the time left (grpc-timeout rounds up).
        remaining = entries[0]["time_remaining"]
        assert remaining is not None and 0 < remaining <= CALL_TIMEOUT + WIRE_ROUNDING

    # Counted by both sidecars as daprd counts gRPC calls, bytes included (Chat: > 6 MiB).
    chat_path = SERVICE + "Chat"
    sent = rpc_metric(caller, "dapr_grpc_io_client_sent_bytes_per_rpc", "grpc_client", chat_path)
    got = rpc_metric(caller, "dapr_grpc_io_client_received_bytes_per_rpc", "grpc_client", chat_path)
    assert sent > 3 * 1024 * 1024 and got > 3 * 1024 * 1024
    served = rpc_metric(callee, "dapr_grpc_io_server_completed_rpcs", "grpc_server", chat_path)
    assert served == 1
    received = rpc_metric(
        callee, "dapr_grpc_io_server_received_bytes_per_rpc", "grpc_server", chat_path
    )
    assert received == sent


def rpc_metric(sidecar: Sidecar, name: str, side: str, method: str) -> float:
    """A counter's value (of OK calls), or a histogram's sum, for one method."""
    total = 0.0
    for family in text_string_to_metric_families(sidecar.metrics_text()):
        if family.name != name:
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get(f"{side}_method") != method:
                continue
            if labels.get(f"{side}_status", "OK") != "OK":  # bytes are not by status
                continue
            if family.type == "counter" or sample.name.endswith("_sum"):
                total += sample.value
    return total


def test_forged_caller_metadata_is_replaced(cluster: Cluster, channels: list[grpc.Channel]) -> None:
    app, _, caller = start(cluster)
    forged = (*META, ("dapr-caller-app-id", "admin"), ("dapr-callee-app-id", "other"))
    greeter_via(caller, channels).say_hello(Text(value="eve"), metadata=forged, timeout=30)
    metadata = seen(calls(app, "SayHello")[0])
    assert metadata["dapr-caller-app-id"] == ["caller"]
    assert metadata["dapr-callee-app-id"] == ["greeter"]


def test_app_error_with_details_reaches_the_caller_unchanged(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, _, caller = start(cluster)
    with pytest.raises(grpc.RpcError) as raised:
        greeter_via(caller, channels).fail(Text(value="zed"), metadata=META, timeout=30)
    error: Any = raised.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "no greeting for zed"
    trailing = dict(error.trailing_metadata())
    assert trailing["x-app-trailing"] == "bye"
    status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "NO_GREETING",
        "greeter.test",
        {"name": "zed"},
    )
    assert len(calls(app, "Fail")) == 1


def test_deadline_expires_at_the_app(cluster: Cluster, channels: list[grpc.Channel]) -> None:
    app, _, caller = start(cluster)
    with pytest.raises(grpc.RpcError) as raised:
        greeter_via(caller, channels).wait(Text(value="late"), metadata=META, timeout=2.0)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    started = calls(app, "Wait")
    assert len(started) == 1
    remaining = started[0]["time_remaining"]
    assert remaining is not None and 0 < remaining <= 2.0 + WIRE_ROUNDING
    ended = wait_until(lambda: calls(app, "Wait.end"), "the app sees its call end")
    assert ended[0]["ended_by"] == "deadline"


def test_cancellation_by_the_caller_reaches_the_app(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, _, caller = start(cluster)
    future = greeter_via(caller, channels).wait.future(
        Text(value="never"), metadata=META, timeout=60
    )
    wait_until(lambda: calls(app, "Wait"), "the app has the call")
    future.cancel()
    ended = wait_until(lambda: calls(app, "Wait.end"), "the app sees the cancel")
    assert ended[0]["ended_by"] == "cancel"
    assert ended[0]["waited"] < 60


def test_own_app_id_goes_straight_to_the_app(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    app, callee, _ = start(cluster)
    reply = greeter_via(callee, channels).say_hello(Text(value="me"), metadata=META, timeout=30)
    assert reply.value == "hello me"
    metadata = seen(calls(app, "SayHello")[0])
    assert metadata["dapr-caller-app-id"] == ["greeter"]


def test_refusals(cluster: Cluster, channels: list[grpc.Channel]) -> None:
    config = cluster.root / "greeter.yaml"
    config.write_text(GREETER_CONFIG)
    token = {"DAPR_API_TOKEN": "s3cret", "APP_API_TOKEN": "app-token"}
    app, _, caller = start(cluster, callee_extra=("--config", str(config)), env=token)
    http_app = cluster.app("web")
    cluster.sidecar("web", http_app, env=token)
    down = ("--app-protocol", "grpc", "--app-port", str(free_port()))  # nothing listens
    cluster.sidecar("down", extra=down, env=token)
    greeter = greeter_via(caller, channels)
    authorized = (*META, ("dapr-api-token", "s3cret"))

    def code_of(method: Any, metadata: tuple[tuple[str, Any], ...]) -> tuple[Any, str]:
        with pytest.raises(grpc.RpcError) as raised:
            method(Text(value="x"), metadata=metadata, timeout=CALL_TIMEOUT)
        error: Any = raised.value
        return error.code(), error.details()

    # The API token: required on the API port, never forwarded; the app gets its own.
    code, details = code_of(greeter.say_hello, META)
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    code, details = code_of(greeter.say_hello, (*META, ("dapr-api-token", "wrong")))
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    assert greeter.say_hello(Text(value="ok"), metadata=authorized, timeout=30).value == "hello ok"
    assert seen(calls(app, "SayHello")[0])["dapr-api-token"] == ["app-token"]

    # Access control on the callee: the full method, gRPC mode.
    code, details = code_of(greeter.fail, authorized)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "operation: /tether.test.Greeter/Fail" in details
    assert calls(app, "Fail") == []

    # An app ID nobody serves.
    nobody = (("dapr-app-id", "nosuch"), ("dapr-api-token", "s3cret"))
    code, details = code_of(greeter.say_hello, nobody)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "nosuch" in details

    # An app whose protocol is http cannot be proxied to.
    web = (("dapr-app-id", "web"), ("dapr-api-token", "s3cret"))
    code, details = code_of(greeter.say_hello, web)
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "--app-protocol grpc" in details
    assert http_app.received() == []

    # An app that is not listening: the callee's sidecar says so.
    code, details = code_of(greeter.say_hello, (("dapr-app-id", "down"), *authorized[-1:]))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "failed to proxy request to app down" in details


def test_the_relay_keeps_dapr_api_methods_apart(
    cluster: Cluster, channels: list[grpc.Channel]
) -> None:
    _, _, caller = start(cluster)
    channel = grpc.insecure_channel(f"127.0.0.1:{caller.grpc_port}")
    channels.append(channel)
    get_state = channel.unary_unary("/dapr.proto.runtime.v1.Dapr/GetState")
    with pytest.raises(grpc.RpcError) as raised:
        get_state(b"", metadata=META, timeout=CALL_TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
