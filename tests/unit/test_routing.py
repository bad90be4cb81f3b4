from __future__ import annotations

import base64

import pytest

from proxy.core.app_address import AppAddress, split_app_id
from proxy.core.errors import InvalidAppId, InvalidMethod
from proxy.edge.routing import Api, route_request


def test_invoke_path() -> None:
    route = route_request("POST", "/v1.0/invoke/orders/method/neworder?x=1&y=2", None, None)
    assert (route.api, route.target_id, route.method, route.query) == (
        Api.INVOKE,
        "orders",
        "neworder",
        "x=1&y=2",
    )


def test_nested_method_and_escaped_app_id() -> None:
    route = route_request("GET", "/v1.0/invoke/orders%2Eprod/method/api/v1/add", None, None)
    assert route.target_id == "orders.prod"
    assert route.method == "api/v1/add"


def test_method_only_first_marker_splits() -> None:
    route = route_request("GET", "/v1.0/invoke/a/method/x/method/y", None, None)
    assert (route.target_id, route.method) == ("a", "x/method/y")


def test_empty_method() -> None:
    assert route_request("GET", "/v1.0/invoke/a/method/", None, None).method == ""
    assert route_request("GET", "/v1.0/invoke/a/method", None, None).target_id == "a"


def test_header_wins_on_any_path() -> None:
    route = route_request("GET", "/v1.0/invoke/a/method/b", "orders", None)
    assert (route.target_id, route.method, route.id_header) == (
        "orders",
        "v1.0/invoke/a/method/b",
        b"dapr-app-id",
    )


def test_basic_auth_form() -> None:
    token = base64.b64encode(b"DAPR-APP-ID:orders").decode()
    route = route_request("GET", "/items/1", None, f"Basic {token}")
    assert (route.target_id, route.method, route.id_header) == (
        "orders",
        "items/1",
        b"authorization",
    )


@pytest.mark.parametrize(
    "value", ["Basic !!!", "Bearer x", "Basic " + base64.b64encode(b"user:pw").decode()]
)
def test_other_authorization_is_not_routing(value: str) -> None:
    assert route_request("GET", "/items", None, value).api is Api.NO_APP_ID


@pytest.mark.parametrize(
    ("verb", "path", "api"),
    [
        ("GET", "/v1.0/healthz", Api.HEALTHZ),
        ("GET", "/v1.0/healthz?appid=x", Api.HEALTHZ),
        ("GET", "/v1.0/healthz/outbound", Api.HEALTHZ_OUTBOUND),
        ("GET", "/v1.0/metadata", Api.METADATA),
        ("POST", "/v1.0/shutdown", Api.SHUTDOWN),
        ("GET", "/v1.0/shutdown", Api.NO_APP_ID),
        ("GET", "/", Api.NO_APP_ID),
        ("GET", "/v1.0/invoke/", Api.NO_APP_ID),
    ],
)
def test_api_routes(verb: str, path: str, api: Api) -> None:
    assert route_request(verb, path, None, None).api is api


def test_forbidden_method_bytes() -> None:
    with pytest.raises(InvalidMethod):
        route_request("GET", "/v1.0/invoke/a/method/x#y", None, None)


def test_split_app_id() -> None:
    assert split_app_id("orders", "default") == AppAddress("orders", "default")
    assert split_app_id("orders.prod", "default") == AppAddress("orders", "prod")
    for bad in ("a.b.c", ".b", "a."):
        with pytest.raises(InvalidAppId):
            split_app_id(bad, "default")
