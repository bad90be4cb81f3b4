"""The pure rules for gRPC apps: OnInvoke's metadata (daprd's grpc_channel.go and
InternalMetadataToGrpcMetadata), the app's answer as InternalInvokeResponse, and the
caller's mapping (HTTPStatusFromCode, headers, the JSON status body, pass-through)."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from proxy.app.grpc_channel import GrpcAppAnswer
from proxy.core.body import Body
from proxy.hop.call import InvokeMalformed
from proxy.hop.grpc_answer import grpc_answer, grpc_metadata, http_headers, is_grpc_status
from proxy.hop.grpc_app_rules import answer_metadata, app_metadata, fill_grpc_head
from proxy.hop.header_rules import CallerIdentity
from proxy.observability.trace_context import TraceContext, format_grpc_trace_bin
from proxy.protos import common_pb2, internals_pb2

TRACE = TraceContext(bytes(range(1, 17)), bytes(range(1, 9)), 1, "k=v")


def as_dict(pairs: tuple[tuple[bytes, bytes], ...]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def test_app_metadata_follows_daprd() -> None:
    carried = {
        "Content-Type": ["application/json"],
        "Accept": ["*/*"],
        "X-Custom": ["a", "b"],
        "User-Agent": ["curl"],  # reserved by gRPC: grpc-go never sends it
        "Grpc-Timeout": ["1S"],
        "Destination-App-Id": ["orders"],
        "Dapr-Api-Token": ["caller-token"],
        "Dapr-Caller-App-Id": ["spoofed"],
        "X-Blob-Bin": [base64.b64encode(b"\x00\x01").decode()],
        "X-Broken-Bin": ["not base64!"],
        "X-Newline": ["a\nb"],
        "Traceparent": ["00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"],
    }
    caller = CallerIdentity("checkout", "default", "public")
    metadata = as_dict(
        app_metadata(carried, verified_caller=caller, app_api_token="app-secret", trace=TRACE)
    )
    # Keys lower-cased; permanent HTTP headers prefixed; several values kept.
    assert metadata[b"dapr-content-type"] == [b"application/json"]
    assert metadata[b"dapr-accept"] == [b"*/*"]
    assert metadata[b"x-custom"] == [b"a", b"b"]
    for absent in (b"user-agent", b"grpc-timeout", b"destination-app-id", b"x-broken-bin"):
        assert absent not in metadata
    assert b"x-newline" not in metadata  # no gRPC text metadata carries it
    # Binary values: decoded from Dapr's base64, sent as gRPC binary metadata (base64).
    assert base64.b64decode(metadata[b"x-blob-bin"][0] + b"==") == b"\x00\x01"
    # The verified caller, not what the metadata claims; the app's token, not the caller's.
    assert metadata[b"dapr-caller-app-id"] == [b"checkout"]
    assert metadata[b"dapr-caller-namespace"] == [b"default"]
    assert metadata[b"dapr-api-token"] == [b"app-secret"]
    # Our span's context, in all three forms.
    assert metadata[b"traceparent"] == [b"00-" + bytes(range(1, 17)).hex().encode() + b"-"
                                        + bytes(range(1, 9)).hex().encode() + b"-01"]  # fmt: skip
    assert metadata[b"tracestate"] == [b"k=v"]
    binary = metadata[b"grpc-trace-bin"][0]
    assert base64.b64decode(binary + b"=" * (-len(binary) % 4)) == format_grpc_trace_bin(TRACE)


def test_app_metadata_without_our_span_keeps_the_callers_trace_and_no_token() -> None:
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    metadata = as_dict(
        app_metadata(
            {"Traceparent": [traceparent], "Dapr-Caller-App-Id": ["checkout"]},
            verified_caller=None,
            app_api_token=None,
            trace=None,
        )
    )
    assert metadata[b"traceparent"] == [traceparent.encode()]
    assert b"grpc-trace-bin" in metadata
    assert metadata[b"dapr-caller-app-id"] == [b"checkout"]  # mTLS off: as claimed
    assert b"dapr-api-token" not in metadata


def test_answer_metadata_keeps_the_apps_own() -> None:
    headers = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-accept-encoding", b"identity"),
        (b"x-app", b"1"),
        (b"x-app", b"2"),
        (b"x-bin", base64.b64encode(b"\xff").rstrip(b"=")),
    ]
    assert answer_metadata(headers) == {
        "x-app": ["1", "2"],
        "x-bin": [base64.b64encode(b"\xff").decode()],
    }


def _details_trailer(code: int, message: str) -> bytes:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="BAD", domain="example.com"))
    status = internals_pb2.Status(code=code, message=message)
    status.details.append(info)
    return base64.b64encode(status.SerializeToString()).rstrip(b"=")


def test_the_apps_answer_becomes_daprds_response_head() -> None:
    ok = GrpcAppAnswer(
        "OK",
        "",
        [(b":status", b"200"), (b"x-h", b"1")],
        [(b"grpc-status", b"0"), (b"x-t", b"2")],
        common_pb2.InvokeResponse(content_type="text/plain"),
    )
    head = internals_pb2.InternalInvokeResponse()
    fill_grpc_head(head, ok)
    assert head.status.code == 0
    assert dict(head.headers)["x-h"].values == ["1"]
    assert dict(head.trailers)["x-t"].values == ["2"]
    assert head.message.content_type == "text/plain"

    failed = GrpcAppAnswer(
        "INVALID_ARGUMENT",
        "bad input",
        [],
        [(b"grpc-status", b"3"), (b"grpc-status-details-bin", _details_trailer(3, "bad input"))],
        None,
    )
    head = internals_pb2.InternalInvokeResponse()
    fill_grpc_head(head, failed)
    assert (head.status.code, head.status.message) == (3, "bad input")
    assert len(head.status.details) == 1
    assert not head.HasField("message")
    assert "grpc-status-details-bin" not in head.trailers


@pytest.mark.parametrize(
    ("code", "http"),
    [(0, 200), (1, 408), (2, 500), (3, 400), (4, 504), (5, 404), (6, 409), (7, 403),
     (8, 429), (9, 400), (10, 409), (11, 400), (12, 501), (13, 500), (14, 503),
     (15, 500), (16, 401)],
)  # fmt: skip
def test_http_status_from_code(code: int, http: int) -> None:
    head = internals_pb2.InternalInvokeResponse()
    head.status.code = code
    assert is_grpc_status(code)
    assert grpc_answer(head, Body(b"data"), "orders").status == http


def test_ok_answer_for_http_callers() -> None:
    head = internals_pb2.InternalInvokeResponse()
    head.headers["x-h"].values.extend(["1", "2"])
    head.headers["grpc-foo"].values.append("g")
    head.headers["x-b-bin"].values.append("AAE=")
    head.headers["traceparent"].values.append("t")
    head.trailers["x-t"].values.append("2")
    head.message.content_type = "application/json"
    body = Body(b'{"a":1}')
    answer = grpc_answer(head, body, "orders")
    assert answer.status == 200
    assert answer.body is body
    # The first value only; gRPC's names renamed; -bin, trace and trailers left out.
    assert sorted(answer.headers) == [
        (b"content-type", b"application/json"),
        (b"dapr-grpc-foo", b"g"),
        (b"x-h", b"1"),
    ]
    assert answer.grpc is not None
    assert answer.grpc.trailers == {"x-t": ["2"]}


def test_error_answer_for_http_callers_is_the_status_as_json() -> None:
    head = internals_pb2.InternalInvokeResponse()
    head.status.code = 3
    head.status.message = "bad input"
    raw = base64.b64decode(_details_trailer(3, "bad input") + b"==")
    head.status.details.extend(internals_pb2.Status.FromString(raw).details)
    answer = grpc_answer(head, Body(b""), "orders")
    assert answer.status == 400
    assert json.loads(answer.body.head) == {
        "code": 3,
        "message": "bad input",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "BAD",
                "domain": "example.com",
            }
        ],
    }
    assert answer.grpc is not None and answer.grpc.details  # for the gRPC API's trailer


def test_a_detail_of_an_unknown_type_is_a_malformed_response() -> None:
    head = internals_pb2.InternalInvokeResponse()
    head.status.code = 13
    head.status.details.add(type_url="type.googleapis.com/no.such.Type", value=b"")
    with pytest.raises(InvokeMalformed):
        grpc_answer(head, Body(b""), "orders")


def test_grpc_metadata_for_the_grpc_api() -> None:
    carried = {
        "x-h": ["1"],
        "content-type": ["application/grpc"],
        "grpc-accept-encoding": ["gzip"],
        "x-b-bin": [base64.b64encode(b"\x01").decode()],
        "Accept": ["*/*"],
    }
    assert sorted(grpc_metadata(carried, http_conversion=True), key=str) == sorted(
        [("x-h", "1"), ("x-b-bin", b"\x01"), ("dapr-accept", "*/*")], key=str
    )
    assert ("accept", "*/*") in grpc_metadata(carried, http_conversion=False)


def test_http_headers_drop_what_http_cannot_carry() -> None:
    assert http_headers({"x-a": ["a\r\nb"], "connection": ["close"], "x-ok": ["1"]}) == [
        (b"x-ok", b"1")
    ]
