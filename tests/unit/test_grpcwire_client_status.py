"""How the lean client reads a call's end: grpc-status and grpc-message from
trailers, a response that is not gRPC, and an HTTP/2 reset, each with grpcio's code."""

from __future__ import annotations

import pytest

from proxy.grpcwire.client_status import (
    Status,
    check_response_head,
    status_from_reset,
    status_from_trailers,
)


def test_trailers_give_the_code_name_and_the_decoded_message() -> None:
    trailers = [(b"grpc-status", b"3"), (b"grpc-message", b"bad %25 input%0A")]
    assert status_from_trailers(trailers) == Status("INVALID_ARGUMENT", "bad % input\n")
    assert status_from_trailers([(b"grpc-status", b"0")]) == Status("OK")
    assert status_from_trailers([(b"grpc-status", b"99")]) == Status("UNKNOWN")
    assert status_from_trailers([(b"grpc-status", b"x")]) == Status("UNKNOWN")


def test_trailers_without_a_status_are_none() -> None:
    assert status_from_trailers([(b"grpc-message", b"m")]) is None


def test_a_grpc_response_head_passes() -> None:
    head = [(b":status", b"200"), (b"content-type", b"application/grpc+proto")]
    assert check_response_head(head) is None


@pytest.mark.parametrize(
    ("http_status", "code"),
    [
        (b"404", "UNIMPLEMENTED"),
        (b"503", "UNAVAILABLE"),
        (b"401", "UNAUTHENTICATED"),
        (b"500", "UNKNOWN"),
        (b"", "UNKNOWN"),
    ],
)
def test_a_response_that_is_not_grpc_maps_its_http_status(http_status: bytes, code: str) -> None:
    status = check_response_head([(b":status", http_status), (b"content-type", b"text/html")])
    assert status is not None and status.code == code


def test_a_200_that_is_not_grpc_is_unknown() -> None:
    status = check_response_head([(b":status", b"200"), (b"content-type", b"text/html")])
    assert status is not None and status.code == "UNKNOWN"


@pytest.mark.parametrize(
    ("error_code", "code"),
    [
        (0x0, "INTERNAL"),
        (0x2, "INTERNAL"),
        (0x7, "UNAVAILABLE"),
        (0x8, "CANCELLED"),
        (0xB, "RESOURCE_EXHAUSTED"),
        (0xC, "PERMISSION_DENIED"),
    ],
)
def test_a_reset_maps_as_grpc_does(error_code: int, code: str) -> None:
    assert status_from_reset(error_code).code == code
