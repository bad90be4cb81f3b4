"""Smuggling and limit cases on the HTTP API: the right 4xx, the connection
closed, and the target app receives nothing (peers-and-pitfalls D.1-D.5, D.9)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.harness import App, Cluster, Sidecar

INVOKE = b"/v1.0/invoke/orders/method/x"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Sidecar]]:
    cluster = Cluster(tmp_path_factory.mktemp("malformed"))
    try:
        cluster.certs_init()
        app = cluster.app("orders")
        cluster.sidecar("orders", app)
        checkout = cluster.sidecar("checkout", extra=("--max-body-size", "1Ki"))
        yield app, checkout
    finally:
        cluster.stop_all()


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send raw bytes; return everything read and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        closed = False
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                closed = True
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks):
                sock.settimeout(1.0)  # a closed connection shows as EOF right after
        return b"".join(chunks), closed


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


CASES = {
    "cl_and_te": (
        b"POST " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /v1.0/invoke/orders/method/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    "conflicting_lengths": (
        b"POST "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    "negative_length": (
        b"POST " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        400,
    ),
    "unknown_coding": (
        b"POST " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    "te_on_http10": (
        b"POST " + INVOKE + b" HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "bad_chunk_size": (
        b"POST "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "bare_lf_in_chunk": (
        b"POST "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        400,
    ),
    "space_before_colon": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nX-Foo : bar\r\n\r\n", 400),
    "obs_fold": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n  folded\r\n\r\n", 400),
    "no_host": (b"GET " + INVOKE + b" HTTP/1.1\r\n\r\n", 400),
    "two_hosts": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "nul_in_header": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    # h11 accepts these; Go's server (daprd) refuses them, and so does tether now.
    "soh_in_header": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "esc_in_header": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nX-A: \x1b[31m\r\n\r\n", 400),
    "del_in_header": (b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", 400),
    "headers_too_large": (
        b"GET " + INVOKE + b" HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 8000 + b"\r\n\r\n",
        431,
    ),
    "uri_too_long": (b"GET " + INVOKE + b"/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "body_too_large": (
        b"POST " + INVOKE + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000,
        413,
    ),
    "chunked_body_too_large": (
        b"POST "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"400\r\n" + b"a" * 1024 + b"\r\n") * 3
        + b"0\r\n\r\n",
        413,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rejected_and_closed_and_app_sees_nothing(pair: tuple[App, Sidecar], name: str) -> None:
    app, checkout = pair
    raw, expected = CASES[name]
    before = len(app.received())
    reply, closed = exchange(checkout.http_port, raw)
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    assert status_of(reply) == expected, reply[:300]
    assert closed
    assert len(app.received()) == before


def test_pipelined_requests_are_answered_in_order(pair: tuple[App, Sidecar]) -> None:
    app, checkout = pair
    raw = (
        b"".join(
            b"GET /v1.0/invoke/orders/method/p" + str(i).encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            for i in range(3)
        )
        + b"GET /v1.0/invoke/orders/method/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    reply, closed = exchange(checkout.http_port, raw)
    assert reply.count(b"HTTP/1.1 200 ") == 4
    assert closed
    paths = [entry["path"] for entry in app.received()[-4:]]
    assert paths == ["/p0", "/p1", "/p2", "/last"]


def test_keep_alive_serves_several_requests(pair: tuple[App, Sidecar]) -> None:
    _, checkout = pair
    with socket.create_connection(("127.0.0.1", checkout.http_port), timeout=10) as sock:
        for i in range(3):
            sock.sendall(
                b"GET /v1.0/invoke/orders/method/k"
                + str(i).encode()
                + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            data = b""
            while b"\r\n\r\n" not in data:
                received = sock.recv(65536)
                assert received, "the server closed a keep-alive connection"
                data += received
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = int(next(x for x in lines if x.lower().startswith(b"content-length"))[15:])
            while len(rest) < length:
                received = sock.recv(65536)
                assert received, "the server closed mid-response"
                rest += received
            assert head.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("method", [b"a\x01b", b"a#b", b"a\x7fb"])
def test_forbidden_bytes_in_the_method_are_400(pair: tuple[App, Sidecar], method: bytes) -> None:
    app, checkout = pair
    before = len(app.received())
    raw = (
        b"GET /v1.0/invoke/orders/method/"
        + method
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    reply, _ = exchange(checkout.http_port, raw)
    assert status_of(reply) == 400, reply[:300]
    assert len(app.received()) == before


def _send_all_then_read(port: int, raw: bytes) -> bytes:
    """A plain client: send the whole request, then read to EOF (a reset raises)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


OVERSIZED = {
    # 200 KB of headers against the default --read-buffer-size of 4 KB.
    "headers_200k": (
        b"GET "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Fill-%d: %s\r\n" % (i, b"a" * 1000) for i in range(200))
        + b"\r\n",
        431,
    ),
    # A body far over --max-body-size 1Ki, sent in full as curl would.
    "body_1m": (
        b"POST "
        + INVOKE
        + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
        + b"a" * 1048576,
        413,
    ),
}


@pytest.mark.parametrize("name", sorted(OVERSIZED))
def test_oversized_request_gets_dapr_error_not_a_reset(
    pair: tuple[App, Sidecar], name: str
) -> None:
    app, checkout = pair
    raw, expected = OVERSIZED[name]
    before = len(app.received())
    # Whether closing with unread input resets depends on timing: try several times.
    for _ in range(5):
        reply = _send_all_then_read(checkout.http_port, raw)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert status_of(head) == expected, head[:200]
        assert json.loads(body)["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert len(app.received()) == before
