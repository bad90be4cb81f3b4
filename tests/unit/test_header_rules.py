from __future__ import annotations

import pytest

from proxy.core.errors import CallRejected
from proxy.hop.callee import request_target
from proxy.hop.header_rules import (
    CallerIdentity,
    app_header_name,
    app_request_headers,
    canonical_name,
    client_response_headers,
    outbound_metadata,
    response_metadata,
    strip_hop_by_hop,
)

CALLER = CallerIdentity("checkout", "default")


def test_canonical_name() -> None:
    assert canonical_name("x-foo-bar") == "X-Foo-Bar"
    assert canonical_name("content-type") == "Content-Type"


def test_strip_hop_by_hop_and_connection_listed() -> None:
    headers = [
        (b"connection", b"keep-alive, X-Secret"),
        (b"x-secret", b"1"),
        (b"keep-alive", b"5"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"x-kept", b"2"),
    ]
    assert strip_hop_by_hop(headers) == [(b"x-kept", b"2")]


def test_outbound_metadata_drops_spoofed_and_caller_only_headers() -> None:
    metadata = outbound_metadata(
        [
            (b"host", b"localhost:3500"),
            (b"dapr-api-token", b"t"),
            (b"dapr-app-id", b"orders"),
            (b"dapr-caller-app-id", b"evil"),
            (b"dapr-callee-app-id", b"evil"),
            (b"destination-app-id", b"evil"),
            (b"connection", b"dapr-caller-namespace"),
            (b"x-a", b"1"),
            (b"x-a", b"2"),
            (b"authorization", b"Basic xyz"),
        ],
        caller=CALLER,
        callee_app_id="orders",
        host_ip="127.0.0.1",
        hostname="box",
        drop=b"authorization",
    )
    assert metadata["X-A"] == ["1", "2"]
    assert metadata["dapr-caller-app-id"] == ["checkout"]
    assert metadata["dapr-caller-namespace"] == ["default"]
    assert metadata["dapr-callee-app-id"] == ["orders"]
    for absent in ("Host", "Dapr-Api-Token", "Dapr-App-Id", "Destination-App-Id", "Authorization"):
        assert absent not in metadata
    assert metadata["X-Forwarded-For"] == ["127.0.0.1"]
    assert metadata["X-Forwarded-Host"] == ["box"]
    assert metadata["Forwarded"] == ["for=127.0.0.1;by=127.0.0.1;host=box"]


def test_forwarded_headers_are_appended_and_ipv6_quoted() -> None:
    metadata = outbound_metadata(
        [
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"forwarded", b"for=10.0.0.1"),
            (b"x-forwarded-host", b"h"),
        ],
        caller=CALLER,
        callee_app_id="o",
        host_ip="::1",
        hostname="box",
    )
    assert metadata["X-Forwarded-For"] == ["10.0.0.1, ::1"]
    assert metadata["X-Forwarded-Host"] == ["h"]
    assert metadata["Forwarded"] == ['for=10.0.0.1, for="[::1]";by="[::1]";host=box']


def test_app_request_headers_with_verified_caller_and_app_token() -> None:
    metadata = {
        "X-A": ["1"],
        "Content-Type": ["text/plain"],
        "Content-Length": ["3"],
        "Dapr-Api-Token": ["caller-token"],
        "dapr-caller-app-id": ["claimed"],
        "dapr-caller-namespace": ["claimed-ns"],
        "dapr-callee-app-id": ["orders"],
        "Grpc-Trace-Bin": ["xx"],
        "Transfer-Encoding": ["chunked"],
        "X-Split": ["a\r\nInjected: 1"],
    }
    headers = app_request_headers(
        metadata, verified_caller=CallerIdentity("checkout", "prod"), app_api_token="app-token"
    )
    assert sorted(headers) == sorted(
        [
            (b"x-a", b"1"),
            (b"dapr-callee-app-id", b"orders"),
            (b"dapr-caller-app-id", b"checkout"),
            (b"dapr-caller-namespace", b"prod"),
            (b"dapr-api-token", b"app-token"),
        ]
    )


def test_app_request_headers_without_mtls_keep_claimed_caller() -> None:
    headers = app_request_headers(
        {"dapr-caller-app-id": ["checkout"]}, verified_caller=None, app_api_token=None
    )
    assert headers == [(b"dapr-caller-app-id", b"checkout")]


def test_response_headers_round_trip_without_hop_by_hop() -> None:
    metadata = response_metadata(
        [
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"connection", b"x-internal"),
            (b"x-internal", b"1"),
            (b"transfer-encoding", b"chunked"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
    )
    assert metadata == {
        "Content-Type": ["application/json"],
        "Content-Length": ["2"],
        "Set-Cookie": ["a=1", "b=2"],
    }
    headers = client_response_headers(metadata, "application/json")
    assert headers == [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_client_response_headers_add_content_type_once() -> None:
    assert client_response_headers({}, "text/plain") == [(b"content-type", b"text/plain")]


def test_grpc_reserved_names_become_dapr_headers_as_daprd_renames_them() -> None:
    headers = app_request_headers(
        {
            ":authority": ["orders:50002"],
            ":path": ["/x"],
            "grpc-timeout": ["5S"],
            "grpc-trace-bin": ["AAAA"],
            "X-Kept": ["1"],
        },
        verified_caller=None,
        app_api_token=None,
    )
    assert headers == [
        (b"dapr-authority", b"orders:50002"),
        (b"dapr-path", b"/x"),
        (b"dapr-grpc-timeout", b"5S"),
        (b"x-kept", b"1"),
    ]


@pytest.mark.parametrize("name", ["x bad", "x-bad\r\ninjected", "x:y", "x-zähler", "", "(x)"])
def test_a_name_no_http_request_can_carry_is_refused_as_daprd_refuses_it(name: str) -> None:
    with pytest.raises(CallRejected) as refused:
        app_request_headers({name: ["v"]}, verified_caller=None, app_api_token=None)
    assert refused.value.code == "INTERNAL"
    assert str(refused.value) == f"error invoking app channel: invalid header field name {name!r}"
    with pytest.raises(CallRejected):
        app_header_name(name)


def test_header_values_keep_their_bytes_and_text_beyond_latin1_goes_as_utf8() -> None:
    headers = app_request_headers(
        {"X-Latin": ["caf\xe9"], "X-Text": ["заказ €"], "X-Split": ["a\r\nb"]},
        verified_caller=None,
        app_api_token=None,
    )
    assert headers == [(b"x-latin", b"caf\xe9"), (b"x-text", "заказ €".encode())]


def test_request_target_escapes_what_a_request_line_can_not_carry() -> None:
    assert request_target("api/v1/add", "a=1&b=two%20words") == "/api/v1/add?a=1&b=two%20words"
    assert request_target("a%2Fb", "") == "/a%2Fb"  # existing escapes stay as they are
    assert request_target("new order/заказ", "") == "/new%20order/%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7"


@pytest.mark.parametrize("query", ["a=1 2", "a=1\r\nX: y", "q=заказ"])
def test_request_target_refuses_a_query_no_request_line_can_carry(query: str) -> None:
    with pytest.raises(CallRejected) as refused:
        request_target("x", query)
    assert refused.value.code == "INTERNAL"
    assert str(refused.value) == f"error invoking app channel: invalid query {query!r}"
