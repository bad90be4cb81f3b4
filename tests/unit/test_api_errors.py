"""The Dapr API handler's answers: what the invoker is asked, and how every
failure looks on the wire (Dapr's bodies and statuses, written out here)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.app.health import AppHealthState, HealthCheckSettings
from proxy.core.body import Body
from proxy.edge.api import ApiHandler, AppConnection
from proxy.edge.http_server import HttpRequest, HttpResponse
from proxy.hop.call import Answer, Invocation, InvokeDenied, InvokeError, InvokeRejected

CONNECTION = AppConnection(
    port=None, protocol="http", channel_address="127.0.0.1", max_concurrency=0
)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Target:
    """Stands in for the invoker behind the edge: records what it is asked and
    answers with a fixed answer or raises a fixed error."""

    def __init__(self, result: Answer | InvokeError) -> None:
        self.result = result
        self.calls: list[Invocation] = []

    async def __call__(self, call: Invocation) -> Answer:
        self.calls.append(call)
        if isinstance(self.result, InvokeError):
            raise self.result
        return self.result


def handler(
    target: Target | None = None,
    *,
    ready: bool = True,
    app_health: AppHealthState | None = None,
    token: str | None = None,
) -> ApiHandler:
    return ApiHandler(
        "checkout",
        target or Target(Answer(200, [], Body())),
        CONNECTION,
        token,
        lambda: ready,
        lambda: None,
        (HealthCheckSettings(), app_health) if app_health is not None else None,
    )


def serve(
    api: ApiHandler, verb: str, target: str, headers: list[tuple[bytes, bytes]] | None = None
) -> HttpResponse:
    return asyncio.run(api(HttpRequest(verb, target, headers or [], Body(b"{}"))))


def test_the_edge_hands_the_invoker_a_protocol_neutral_call() -> None:
    target = Target(Answer(201, [(b"x-app", b"1")], Body(b"made")))
    headers = [(b"dapr-app-id", b"orders.prod"), (b"content-type", b"application/json")]
    response = serve(handler(target), "PUT", "/a//b/../c?x=1&y=2", headers)
    assert (response.status, response.headers, response.body.head) == (
        201,
        [(b"x-app", b"1")],
        b"made",
    )
    [call] = target.calls
    assert call == Invocation(
        target_id="orders.prod",
        method="a/c",
        verb="PUT",
        path="/a//b/../c",
        query="x=1&y=2",
        headers=headers,
        body=call.body,
        id_header=b"dapr-app-id",
    )
    assert call.body.head == b"{}"


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (
            InvokeError("orders", "context deadline exceeded"),
            500,
            b"failed to invoke, id: orders, err: context deadline exceeded",
        ),
        (
            InvokeDenied("orders", "rpc error: code = PermissionDenied desc = no"),
            403,
            b"failed to invoke, id: orders, err: rpc error: code = PermissionDenied desc = no",
        ),
        (
            InvokeRejected("checkout", "bad method"),
            400,
            b"failed to invoke, id: checkout, err: bad method",
        ),
    ],
    ids=["failed", "denied", "rejected"],
)
def test_invoke_errors_become_dapr_json(error: InvokeError, status: int, message: bytes) -> None:
    response = serve(handler(Target(error)), "GET", "/v1.0/invoke/orders/method/x")
    assert response.status == status
    assert response.headers == [(b"content-type", b"application/json")]
    assert response.body.head == b'{"errorCode":"ERR_DIRECT_INVOKE","message":"' + message + b'"}'


def test_a_traced_failure_carries_the_callers_traceparent() -> None:
    error = InvokeError("orders", "circuit breaker is open")
    error.traceparent = TRACEPARENT
    response = serve(handler(Target(error)), "GET", "/v1.0/invoke/orders/method/x")
    assert response.status == 500
    assert response.headers == [
        (b"content-type", b"application/json"),
        (b"traceparent", TRACEPARENT.encode()),
    ]


def test_healthz_answers() -> None:
    assert serve(handler(), "GET", "/v1.0/healthz").status == 204
    mismatch = serve(handler(), "GET", "/v1.0/healthz?appid=orders")
    assert (mismatch.status, mismatch.body.head) == (
        500,
        b'{"errorCode":"ERR_HEALTH_APPID_NOT_MATCH","message":"dapr app-id does not match"}',
    )
    starting = serve(handler(ready=False), "GET", "/v1.0/healthz")
    assert (starting.status, starting.body.head) == (
        500,
        b'{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [servers]"}',
    )
    app_down = serve(handler(app_health=AppHealthState(3)), "GET", "/v1.0/healthz")
    assert (app_down.status, app_down.body.head) == (
        500,
        b'{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [app health]"}',
    )
    outbound = serve(handler(ready=False), "GET", "/v1.0/healthz/outbound")
    assert (outbound.status, outbound.body.head) == (
        500,
        b'{"errorCode":"ERR_OUTBOUND_HEALTH_NOT_READY","message":"dapr outbound is not ready"}',
    )


def test_no_app_id_and_bad_method() -> None:
    target = Target(Answer(200, [], Body()))
    missing = serve(handler(target), "GET", "/v1.0/nothing")
    assert (missing.status, missing.body.head) == (
        404,
        b'{"errorCode":"ERR_DIRECT_INVOKE","message":'
        b'"failed getting app id either from the URL path or the header dapr-app-id"}',
    )
    bad = serve(handler(target), "GET", "/v1.0/invoke/orders/method/a%23b#x")
    assert bad.status == 400
    assert bad.body.head == (
        b'{"errorCode":"ERR_DIRECT_INVOKE",'
        b'"message":"failed to invoke, id: , err: method contains a forbidden character \'#\'"}'
    )
    assert target.calls == []


def test_a_bad_token_is_refused_before_the_invoker() -> None:
    target = Target(Answer(200, [], Body()))
    refused = serve(handler(target, token="s3cret"), "GET", "/v1.0/invoke/orders/method/x")
    assert (refused.status, refused.headers, refused.body.head) == (
        401,
        [(b"content-type", b"text/plain")],
        b"invalid api token",
    )
    assert target.calls == []
