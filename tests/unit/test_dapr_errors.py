"""Dapr's error bodies and status mappings (dapr-compat.md section 1)."""

from __future__ import annotations

import json

import grpc
import pytest

from proxy.core.grpc_status import GRPC_CODE_NAMES, grpc_code_name, http_status_from_grpc
from proxy.edge.dapr_errors import (
    ERR_DIRECT_INVOKE,
    NO_APP_ID_MESSAGE,
    direct_invoke_failed,
    error_json,
    invalid_api_token,
    invoke_failed,
    no_app_id,
)
from proxy.hop.call import InvokeDenied, InvokeError, InvokeRejected

# dapr-compat.md section 1, "gRPC to HTTP (HTTPStatusFromCode)", written out by hand.
EXPECTED_HTTP_FROM_GRPC = {
    "OK": 200,
    "CANCELLED": 408,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
}


@pytest.mark.parametrize(("code", "status"), sorted(EXPECTED_HTTP_FROM_GRPC.items()))
def test_http_status_from_grpc_matches_dapr(code: str, status: int) -> None:
    assert http_status_from_grpc(code) == status


def test_the_table_covers_every_grpc_code() -> None:
    assert set(EXPECTED_HTTP_FROM_GRPC) == {code.name for code in grpc.StatusCode}
    assert set(GRPC_CODE_NAMES) == set(EXPECTED_HTTP_FROM_GRPC)


@pytest.mark.parametrize("name", ["", "NOPE", "ok", "Internal"])
def test_unknown_code_name_maps_to_500(name: str) -> None:
    assert http_status_from_grpc(name) == 500


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_grpc_code_name_matches_the_grpc_numbering(code: grpc.StatusCode) -> None:
    number = code.value[0]
    assert grpc_code_name(number) == code.name
    assert GRPC_CODE_NAMES[number] == code.name


@pytest.mark.parametrize("number", [-1, 17, 99, 100, 200, 2**31])
def test_grpc_code_name_out_of_range_is_unknown(number: int) -> None:
    assert grpc_code_name(number) == "UNKNOWN"


def test_error_json_exact_bytes() -> None:
    error = error_json(404, "ERR_SOMETHING", "it went wrong")
    assert error.status == 404
    assert error.content_type == b"application/json"
    assert error.body == b'{"errorCode":"ERR_SOMETHING","message":"it went wrong"}'


def test_error_json_escapes_quotes_and_backslashes() -> None:
    error = error_json(400, "ERR_MALFORMED_REQUEST", 'bad "value" \\ here\n')
    assert error.body == (
        b'{"errorCode":"ERR_MALFORMED_REQUEST","message":"bad \\"value\\" \\\\ here\\n"}'
    )
    assert json.loads(error.body) == {
        "errorCode": "ERR_MALFORMED_REQUEST",
        "message": 'bad "value" \\ here\n',
    }


def test_error_json_non_ascii_round_trips() -> None:
    error = error_json(500, "ERR_X", "caf\u00e9 \u2603")
    assert json.loads(error.body)["message"] == "caf\u00e9 \u2603"


def test_direct_invoke_failed_message_format() -> None:
    error = direct_invoke_failed("orders", "context deadline exceeded")
    assert error.status == 500
    assert error.content_type == b"application/json"
    assert error.body == (
        b'{"errorCode":"ERR_DIRECT_INVOKE",'
        b'"message":"failed to invoke, id: orders, err: context deadline exceeded"}'
    )


def test_direct_invoke_failed_with_explicit_status() -> None:
    error = direct_invoke_failed("orders.prod", "rpc error: code = PermissionDenied", 403)
    assert error.status == 403
    assert json.loads(error.body) == {
        "errorCode": ERR_DIRECT_INVOKE,
        "message": "failed to invoke, id: orders.prod, err: rpc error: code = PermissionDenied",
    }


def test_no_app_id() -> None:
    error = no_app_id()
    assert error.status == 404
    assert error.content_type == b"application/json"
    assert NO_APP_ID_MESSAGE == (
        "failed getting app id either from the URL path or the header dapr-app-id"
    )
    assert error.body == (
        b'{"errorCode":"ERR_DIRECT_INVOKE","message":'
        b'"failed getting app id either from the URL path or the header dapr-app-id"}'
    )


def test_invalid_api_token_is_plain_text_401() -> None:
    error = invalid_api_token()
    assert error.status == 401
    assert error.body == b"invalid api token"
    assert error.content_type == b"text/plain"


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            InvokeError("orders", "context deadline exceeded"),
            500,
            b'{"errorCode":"ERR_DIRECT_INVOKE",'
            b'"message":"failed to invoke, id: orders, err: context deadline exceeded"}',
        ),
        (
            InvokeError("orders", "circuit breaker is open"),
            500,
            b'{"errorCode":"ERR_DIRECT_INVOKE",'
            b'"message":"failed to invoke, id: orders, err: circuit breaker is open"}',
        ),
        (
            InvokeDenied("orders.prod", "rpc error: code = PermissionDenied desc = denied"),
            403,
            b'{"errorCode":"ERR_DIRECT_INVOKE","message":"failed to invoke, id: orders.prod,'
            b' err: rpc error: code = PermissionDenied desc = denied"}',
        ),
        (
            InvokeRejected("self", "method contains a forbidden byte"),
            400,
            b'{"errorCode":"ERR_DIRECT_INVOKE",'
            b'"message":"failed to invoke, id: self, err: method contains a forbidden byte"}',
        ),
    ],
    ids=["failed", "breaker", "denied", "rejected"],
)
def test_invoke_failed_bytes_and_status(error: InvokeError, status: int, body: bytes) -> None:
    response = invoke_failed(error)
    assert (response.status, response.content_type, response.body) == (
        status,
        b"application/json",
        body,
    )
