"""An Invocation becomes Dapr's InternalInvokeRequest."""

from __future__ import annotations

from proxy.core.body import Body
from proxy.hop.call import Invocation
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.request_builder import Locality, internal_request, with_attempt
from proxy.protos import common_pb2, internals_pb2

HERE = Locality(CallerIdentity("checkout", "shop"), "public", "10.0.0.5", "node-1")


async def _rest() -> object:  # an async iterator: the body is still streaming
    yield b"more"


def invocation(**changes: object) -> Invocation:
    fields: dict[str, object] = {
        "target_id": "orders.prod",
        "method": "orders/new",
        "verb": "PUT",
        "path": "/v1.0/invoke/orders.prod/method/orders/new",
        "query": "a=1&b=2",
        "headers": [
            (b"content-type", b"application/json"),
            (b"x-trace-me", b"yes"),
            (b"dapr-app-id", b"orders.prod"),
            (b"connection", b"close"),
        ],
        "body": Body(b'{"n":1}'),
        "id_header": b"dapr-app-id",
    }
    fields.update(changes)
    return Invocation(**fields)  # type: ignore[arg-type]


def metadata(message: internals_pb2.InternalInvokeRequest) -> dict[str, list[str]]:
    return {key: list(value.values) for key, value in message.metadata.items()}


def test_request_fields() -> None:
    message = internal_request(invocation(), "orders", HERE)
    assert message.ver == internals_pb2.V1
    assert message.message.method == "orders/new"
    assert message.message.content_type == "application/json"
    assert message.message.http_extension.verb == common_pb2.HTTPExtension.PUT
    assert message.message.http_extension.querystring == "a=1&b=2"
    assert not message.message.HasField("data")  # the transport carries the body
    meta = metadata(message)
    assert meta["X-Trace-Me"] == ["yes"]
    assert meta["dapr-caller-app-id"] == ["checkout"]
    assert meta["dapr-caller-namespace"] == ["shop"]
    assert meta["dapr-callee-app-id"] == ["orders"]
    assert meta["Content-Length"] == ["7"]
    assert "Dapr-App-Id" not in meta and "Connection" not in meta


def test_a_streaming_body_declares_no_length() -> None:
    message = internal_request(invocation(body=Body(b"{", _rest())), "orders", HERE)  # type: ignore[arg-type]
    assert "Content-Length" not in metadata(message)


def test_unknown_verbs_travel_as_post() -> None:
    message = internal_request(invocation(verb="PROPFIND"), "orders", HERE)
    assert message.message.http_extension.verb == common_pb2.HTTPExtension.POST


def test_with_attempt_copies() -> None:
    message = internal_request(invocation(), "orders", HERE)
    second = with_attempt(message, 2)
    assert metadata(second)["tether-attempt"] == ["2"]
    assert "tether-attempt" not in metadata(message)
