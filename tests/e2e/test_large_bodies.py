"""200 MB up and 200 MB down through a sidecar pair with mTLS, streamed: the
app gets every byte and neither sidecar's peak RSS grows by more than the
replay buffer (bodies are never held whole)."""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from pathlib import Path

from proxy.grpcwire.server_connection import STREAM_WINDOW
from tests.e2e.harness import Cluster, request

SIZE = 200 * 1024 * 1024
CHUNK = b"z" * (256 * 1024)
# tether reads a body whole only up to this size (proxy.edge.http_server.HttpLimits);
# anything larger streams in 64 KiB chunks.
REPLAY_BUFFER = 4 * 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def upload_chunks() -> Iterator[bytes]:
    for _ in range(SIZE // len(CHUNK)):
        yield CHUNK


def test_200mb_upload_and_download_stream_in_bounded_memory(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    orders = cluster.sidecar("orders", app, extra=("--max-body-size", "256Mi"))
    checkout = cluster.sidecar("checkout", extra=("--max-body-size", "256Mi"))
    # Warm both paths up so one-off allocations (channels, TLS) are not counted.
    assert (
        request(
            checkout.http_port, "POST", "/v1.0/invoke/orders/method/warm", body=b"x" * 300_000
        ).status
        == 200
    )
    assert (
        request(checkout.http_port, "GET", "/v1.0/invoke/orders/method/download/3000000").status
        == 200
    )
    before = {s.app_id: peak_rss(s.process.pid) for s in (orders, checkout)}

    connection = http.client.HTTPConnection("127.0.0.1", checkout.http_port, timeout=300)
    connection.request(
        "POST",
        "/v1.0/invoke/orders/method/upload",
        body=upload_chunks(),
        headers={"Content-Length": str(SIZE), "Content-Type": "application/octet-stream"},
    )
    reply = connection.getresponse()
    reply.read()
    assert reply.status == 200
    entry = app.received()[-1]
    expected = hashlib.sha256()
    for chunk in upload_chunks():
        expected.update(chunk)
    assert entry["body_length"] == SIZE
    assert entry["body_sha256"] == expected.hexdigest()

    connection.request("GET", "/v1.0/invoke/orders/method/download/" + str(SIZE))
    reply = connection.getresponse()
    assert reply.status == 200
    assert reply.getheader("content-length") == str(SIZE)
    received = 0
    while chunk := reply.read(1 << 20):
        received += len(chunk)
    connection.close()
    assert received == SIZE

    # Bounded: a 200 MB body may leave behind at most what one buffer holds. The callee
    # may also hold a full HTTP/2 stream window of the body unread while its app is slow
    # (seen on a loaded machine: 4.05 MB), so it gets that much more room.
    bounds = {"checkout": REPLAY_BUFFER, "orders": REPLAY_BUFFER + STREAM_WINDOW}
    for sidecar in (orders, checkout):
        growth = peak_rss(sidecar.process.pid) - before[sidecar.app_id]
        print(f"{sidecar.app_id}: peak RSS grew by {growth / 1024:.0f} KiB")
        assert growth < bounds[sidecar.app_id], f"{sidecar.app_id} grew by {growth} bytes"


def test_chunked_upload_streams_through(cluster: Cluster) -> None:
    cluster.certs_init()
    app = cluster.app("orders")
    cluster.sidecar("orders", app)
    checkout = cluster.sidecar("checkout")
    connection = http.client.HTTPConnection("127.0.0.1", checkout.http_port, timeout=60)
    parts = [b"a" * 70_000, b"b" * 10, b"c" * 100_000]
    connection.request(
        "PUT", "/v1.0/invoke/orders/method/chunked", body=iter(parts), encode_chunked=True
    )
    reply = connection.getresponse()
    reply.read()
    connection.close()
    assert reply.status == 200
    entry = app.received()[-1]
    assert entry["method"] == "PUT"
    assert entry["body_length"] == sum(map(len, parts))
    assert entry["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
