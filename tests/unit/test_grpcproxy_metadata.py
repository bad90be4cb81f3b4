"""gRPC proxying's metadata rules (proxy/grpcproxy/metadata.py) and the status a
caller gets when its call failed before an answer: pure, no sockets."""

from __future__ import annotations

import base64

from proxy.core.errors import InvocationFailed
from proxy.discovery.resolver import AppNotFoundError, ResolveError
from proxy.grpcproxy import metadata as md
from proxy.grpcproxy.caller import failure_status
from proxy.grpcwire.messages import decode_status_message
from resiliency import AttemptTimedOut, CircuitOpen

BIN = base64.b64encode(b"\x00\xff\x10").rstrip(b"=")

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/pkg.Svc/Do"),
    (b":authority", b"127.0.0.1:50001"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"5S"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
    (b"grpc-encoding", b"identity"),
    (b"user-agent", b"grpc-python/1.85"),
    (b"dapr-app-id", b"orders"),
    (b"dapr-api-token", b"s3cret"),
    (b"dapr-caller-app-id", b"admin"),
    (b"dapr-caller-namespace", b"kube-system"),
    (b"dapr-callee-app-id", b"other"),
    (b"connection", b"close"),
    (b"x-custom", b"v1"),
    (b"x-custom", b"v2"),
    (b"x-data-bin", BIN),
    (b"Upper-Case", b"refused by h2"),
    (b"x-broken", b"a\r\nb"),
    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
]

CALLER = md.Identity("checkout", "default")


def names(headers: md.Headers) -> list[bytes]:
    return [name for name, _ in headers]


def test_to_peer_keeps_the_apps_metadata_and_sets_the_sidecar_names_last() -> None:
    out = md.to_peer(REQUEST, CALLER, "orders")
    assert out == [
        (b"dapr-app-id", b"orders"),
        (b"x-custom", b"v1"),
        (b"x-custom", b"v2"),
        (b"x-data-bin", BIN),  # binary metadata untouched (still base64)
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"dapr-caller-app-id", b"checkout"),
        (b"dapr-caller-namespace", b"default"),
        (b"dapr-callee-app-id", b"orders"),
    ]


def test_to_peer_never_forwards_the_api_token_or_the_wire_headers() -> None:
    kept = set(names(md.to_peer(REQUEST, CALLER, "orders")))
    for dropped in (
        b"dapr-api-token",
        b"grpc-timeout",  # the next hop gets the remaining time from the deadline
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"content-type",
        b"te",
        b"user-agent",
        b"connection",
        b":path",
        b"upper-case",
        b"Upper-Case",
        b"x-broken",
    ):
        assert dropped not in kept


def test_to_app_with_a_verified_caller_names_it_from_its_certificate() -> None:
    hop = md.to_peer(REQUEST, CALLER, "orders")
    spoofed = [*hop, (b"dapr-caller-app-id", b"admin"), (b"dapr-api-token", b"peer-token")]
    out = md.to_app(spoofed, md.Identity("checkout", "prod"), "app-token")
    assert md.first(out, b"dapr-api-token") == b"app-token"
    assert [v for n, v in out if n == b"dapr-api-token"] == [b"app-token"]
    assert [v for n, v in out if n == b"dapr-caller-app-id"] == [b"checkout"]
    assert [v for n, v in out if n == b"dapr-caller-namespace"] == [b"prod"]
    assert md.first(out, b"dapr-callee-app-id") == b"orders"
    assert md.first(out, b"x-data-bin") == BIN


def test_to_app_without_a_verified_caller_keeps_its_sidecars_claim_and_no_token() -> None:
    hop = md.to_peer(REQUEST, CALLER, "orders")
    out = md.to_app(hop, None, None)
    assert md.first(out, b"dapr-caller-app-id") == b"checkout"
    assert md.first(out, b"dapr-api-token") is None


def test_target_and_callee_ids() -> None:
    assert md.target_app_id(REQUEST) == "orders"
    assert md.target_app_id([(b"dapr-app-id", b"  ")]) is None
    assert md.target_app_id([]) is None
    assert md.callee_app_id([(b"dapr-app-id", b"a"), (b"dapr-callee-app-id", b"b")]) == "b"
    assert md.callee_app_id([(b"dapr-app-id", b"orders.prod")]) == "orders.prod"
    assert md.callee_app_id([(b"x", b"y")]) is None


def test_dapr_stream_flag() -> None:
    assert md.is_stream([(b"dapr-stream", b"true")])
    assert md.is_stream([(b"dapr-stream", b"True")])
    assert not md.is_stream([(b"dapr-stream", b"false")])
    assert not md.is_stream([])


def test_token_problem() -> None:
    assert md.token_problem(REQUEST, None) is None
    assert md.token_problem(REQUEST, b"s3cret") is None
    assert md.token_problem(REQUEST, b"other") == "authentication error: api token mismatch"
    assert md.token_problem([], b"s3cret") == ("authentication error: missing api token in request")


def test_with_trace_replaces_the_apps_context() -> None:
    headers = [(b"traceparent", b"old"), (b"tracestate", b"a=b"), (b"x", b"y")]
    out = md.with_trace(headers, "00-new-01", "c=d")
    assert out == [(b"x", b"y"), (b"traceparent", b"00-new-01"), (b"tracestate", b"c=d")]
    assert md.with_trace(headers, None) is headers


def test_response_headers_and_trailers_pass_the_apps_metadata_and_status() -> None:
    head = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-encoding", b"identity"),
        (b"x-initial", b"1"),
        (b"x-initial-bin", BIN),
    ]
    assert md.response_headers(head) == [(b"x-initial", b"1"), (b"x-initial-bin", BIN)]
    tail = [
        (b"grpc-status", b"9"),
        (b"grpc-message", b"no%20greeting"),
        (b"grpc-status-details-bin", BIN),
        (b"x-trailing", b"bye"),
    ]
    assert md.trailers(tail) == tail
    # A trailers-only answer carries the response head too: that part is the wire's.
    assert md.trailers([*head[:2], *tail]) == tail
    assert md.status_code(tail) == 9
    assert md.status_code([(b"grpc-status", b"x")]) is None


def test_status_trailers_for_our_own_failures() -> None:
    out = md.status_trailers("UNAVAILABLE", "failed to proxy request to app x: 100% down")
    assert out[0] == (b"grpc-status", b"14")
    assert decode_status_message(out[1][1].decode()) == (
        "failed to proxy request to app x: 100% down"
    )
    assert md.status_trailers("OK", "") == [(b"grpc-status", b"0")]


def test_failure_status_names_the_app() -> None:
    assert failure_status("orders", AppNotFoundError("no instances of orders")) == (
        "UNAVAILABLE",
        "failed to proxy request to app orders: app not found: no instances of orders",
    )
    code, message = failure_status("orders", ResolveError("registry down"))
    assert (code, message) == (
        "UNAVAILABLE",
        "failed to proxy request to app orders: registry down",
    )
    code, message = failure_status("orders", InvocationFailed("refused", "UNAVAILABLE"))
    assert code == "UNAVAILABLE" and "orders" in message and "refused" in message
    code, _ = failure_status("orders", AttemptTimedOut(1.0))
    assert code == "DEADLINE_EXCEEDED"
    code, message = failure_status("orders", CircuitOpen())
    assert code == "UNAVAILABLE" and "circuit breaker is open" in message
