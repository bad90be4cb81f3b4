"""How an invocation's outcome looks on the Dapr gRPC API (daprd's InvokeService):
the app's HTTP status as a gRPC code, the ErrorInfo, the metadata both ways."""

from __future__ import annotations

import pytest
from google.rpc import error_details_pb2, status_pb2

from proxy.daprapi.service import status_details, unknown_method
from proxy.daprapi.status_mapping import (
    GrpcError,
    code_from_http_status,
    error_from_http_status,
    error_from_invoke_error,
    request_headers,
    response_metadata,
)
from proxy.hop.call import InvokeDenied, InvokeError, InvokeRejected
from proxy.observability.trace_context import (
    TraceContext,
    format_grpc_trace_bin,
    format_traceparent,
)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (200, "OK"),
        (201, "OK"),
        (204, "OK"),
        (299, "OK"),
        (400, "INTERNAL"),  # Dapr's table, not grpc-go's INVALID_ARGUMENT
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (408, "CANCELLED"),
        (409, "ALREADY_EXISTS"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "UNKNOWN"),
        (501, "UNIMPLEMENTED"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (302, "UNKNOWN"),
        (418, "UNKNOWN"),
        (502, "UNKNOWN"),
        (599, "UNKNOWN"),
    ],
)
def test_code_from_http_status_is_daprs_table(status: int, code: str) -> None:
    assert code_from_http_status(status) == code


def test_a_2xx_answer_is_no_error() -> None:
    assert error_from_http_status(200, b"fine") is None
    assert error_from_http_status(204, b"") is None


def test_a_non_2xx_answer_carries_status_text_and_error_info() -> None:
    error = error_from_http_status(404, b'{"status": 404}')
    assert error == GrpcError(
        "NOT_FOUND",
        "Not Found",
        ("Not Found", "dapr.io", {"http.code": "404", "http.error_message": '{"status": 404}'}),
    )


def test_the_error_message_keeps_the_first_63_characters_of_the_body() -> None:
    error = error_from_http_status(500, b"x" * 200)
    assert error is not None and error.error_info is not None
    assert error.error_info[2]["http.error_message"] == "x" * 63


def test_a_status_without_text_has_an_empty_message() -> None:
    error = error_from_http_status(599, b"")
    assert error is not None
    assert (error.code, error.message) == ("UNKNOWN", "")


def test_status_details_decode_as_google_rpc_status_with_error_info() -> None:
    error = error_from_http_status(503, b"down")
    assert error is not None
    status = status_pb2.Status.FromString(status_details(error))
    assert (status.code, status.message) == (14, "Service Unavailable")
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    assert (info.reason, info.domain) == ("Service Unavailable", "dapr.io")
    assert dict(info.metadata) == {"http.code": "503", "http.error_message": "down"}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvokeError("orders", "no instance"), "INTERNAL"),
        (InvokeDenied("orders", "denied"), "PERMISSION_DENIED"),
        (InvokeRejected("orders", "bad"), "INVALID_ARGUMENT"),
    ],
)
def test_failures_before_the_app_answered(error: InvokeError, code: str) -> None:
    mapped = error_from_invoke_error(error)
    assert mapped.code == code
    assert mapped.message == f"failed to invoke, id: orders, err: {error.reason}"
    assert mapped.error_info is None


def test_response_metadata_drops_hop_by_hop_and_prefixes_reserved_headers() -> None:
    headers = [
        (b"Content-Type", b"application/json"),
        (b"content-length", b"7"),
        (b"connection", b"keep-alive"),
        (b"x-echo", b"yes"),
        (b"grpc-status", b"0"),
        (b"user-agent", b"app"),
        (b"x-bad", b"caf\xc3\xa9"),
        (b"bad name", b"v"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ]
    assert response_metadata(headers, 201) == [
        ("dapr-content-type", "application/json"),
        ("x-echo", "yes"),
        ("dapr-user-agent", "app"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("dapr-http-status", "201"),
    ]


def test_request_headers_keep_the_callers_metadata_but_not_grpcs_own() -> None:
    metadata: tuple[tuple[str, str | bytes], ...] = (
        ("x-custom", "v"),
        ("user-agent", "dapr-sdk-python/1.19 grpc-python/1.7"),
        ("dapr-api-token", "secret"),
        ("grpc-accept-encoding", "gzip"),
        ("grpc-trace-bin", b"\x00\x01"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    assert request_headers(metadata, "application/json") == [
        (b"x-custom", b"v"),
        (b"user-agent", b"dapr-sdk-python/1.19 grpc-python/1.7"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"content-type", b"application/json"),
    ]
    assert request_headers((), "") == []


def test_a_grpc_trace_bin_becomes_the_invocations_traceparent() -> None:
    context = TraceContext(
        trace_id=bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        flags=1,
    )
    metadata: tuple[tuple[str, str | bytes], ...] = (
        ("grpc-trace-bin", format_grpc_trace_bin(context)),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    # Binary first, as daprd reads it.
    assert request_headers(metadata, "") == [(b"traceparent", format_traceparent(context).encode())]


def test_other_dapr_methods_are_unimplemented_with_a_message_naming_what_is_served() -> None:
    code, message = unknown_method(b"/dapr.proto.runtime.v1.Dapr/GetState")
    assert code == "UNIMPLEMENTED"
    assert "dapr.proto.runtime.v1.Dapr/GetState is not supported by tether" in message
    assert "service invocation" in message
    code, message = unknown_method(b"/helloworld.Greeter/SayHello")
    assert code == "UNIMPLEMENTED"
    assert "gRPC proxying" in message
