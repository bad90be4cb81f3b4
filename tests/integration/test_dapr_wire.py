"""Dapr wire compatibility of the internal gRPC port.

A real plaintext sidecar (started as the e2e tests do) fronts the echo app; the
test speaks ``dapr.proto.internals.v1.ServiceInvocation`` to its internal port
exactly as a daprd peer would, with the generated stubs. The last test goes the
other way: a Dapr-only peer (no tether Multiplex service) registered in the
same registry must still be reachable through the sidecar's HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

from proxy.protos import common_pb2, internals_pb2, internals_pb2_grpc, mux_pb2_grpc
from tests.e2e.harness import App, Cluster, Sidecar, request

CALL_TIMEOUT = 15.0
LOG_WAIT_ROUNDS = 100  # x 0.05 s: bound on waiting for the echo app's log
CONNECT = "/tether.internal.v1.Multiplex/Connect"
CALL_LOCAL_STREAM = "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream"


@dataclass
class Peer:
    cluster: Cluster
    app: App
    sidecar: Sidecar
    internal_address: str

    @property
    def registry(self) -> Path:
        return self.cluster.home / ".tether" / "registry.db"


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    cluster = Cluster(tmp_path_factory.mktemp("wire"))
    try:
        app = cluster.app("orders")
        sidecar = cluster.sidecar("orders", app, mtls=False)
        registry = cluster.home / ".tether" / "registry.db"
        with contextlib.closing(sqlite3.connect(registry, timeout=5)) as db:
            rows = db.execute("SELECT address FROM hosts WHERE app_id = ?", ("orders",)).fetchall()
        assert len(rows) == 1, rows
        yield Peer(cluster, app, sidecar, str(rows[0][0]))
    finally:
        cluster.stop_all()


def _metadata(**headers: str) -> dict[str, internals_pb2.ListStringValue]:
    return {
        name.replace("_", "-"): internals_pb2.ListStringValue(values=[value])
        for name, value in headers.items()
    }


def _invoke_request(
    method: str,
    data: bytes = b"",
    *,
    verb: common_pb2.HTTPExtension.Verb.ValueType = common_pb2.HTTPExtension.POST,
    query: str = "",
    metadata: dict[str, internals_pb2.ListStringValue] | None = None,
    ver: internals_pb2.APIVersion.ValueType = internals_pb2.V1,
) -> internals_pb2.InternalInvokeRequest:
    request = internals_pb2.InternalInvokeRequest(
        ver=ver,
        metadata=metadata or {},
        message=common_pb2.InvokeRequest(
            method=method,
            content_type="application/json",
            http_extension=common_pb2.HTTPExtension(verb=verb, querystring=query),
        ),
    )
    if data:
        request.message.data.CopyFrom(any_pb2.Any(value=data))
    return request


async def _call_local(
    address: str, request: internals_pb2.InternalInvokeRequest
) -> internals_pb2.InternalInvokeResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = internals_pb2_grpc.ServiceInvocationStub(channel)
        response: internals_pb2.InternalInvokeResponse = await stub.CallLocal(
            request, timeout=CALL_TIMEOUT
        )
        return response


async def _call_local_stream(
    address: str, messages: list[internals_pb2.InternalInvokeRequestStream]
) -> list[internals_pb2.InternalInvokeResponseStream]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = internals_pb2_grpc.ServiceInvocationStub(channel)
        call = stub.CallLocalStream(timeout=CALL_TIMEOUT)
        for message in messages:
            await call.write(message)
        await call.done_writing()
        return [message async for message in call]


def _headers(entry: dict[str, object]) -> dict[str, str]:
    return {str(name): str(value) for name, value in entry["headers"]}  # type: ignore[attr-defined]


def _entries_for(app: App, path: str) -> list[dict[str, object]]:
    return [entry for entry in app.received() if entry["path"] == path]


def _wait_for_entry(app: App, path: str) -> dict[str, object]:
    for _ in range(LOG_WAIT_ROUNDS):
        found = _entries_for(app, path)
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"the app never logged {path}")


def _sentinel(peer: Peer, name: str) -> None:
    """A good call after a bad one: once the app logged it, the bad call is settled too."""
    response = asyncio.run(_call_local(peer.internal_address, _invoke_request(name, b"{}")))
    assert response.status.code == 200
    _wait_for_entry(peer.app, "/" + name)


def test_call_local_unary_reaches_the_app(peer: Peer) -> None:
    body = b'{"order":"book","count":2}'
    request = _invoke_request(
        "neworder",
        body,
        query="a=1&b=two%20words",
        metadata=_metadata(Content_Type="application/json", X_Custom="kept-value"),
    )
    response = asyncio.run(_call_local(peer.internal_address, request))

    assert response.status.code == 200
    assert response.headers["X-Echo"].values == ["yes"]
    assert response.message.content_type == "application/json"
    echoed = json.loads(response.message.data.value)
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/neworder?a=1&b=two%20words"
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()

    entry = _entries_for(peer.app, "/neworder?a=1&b=two%20words")[-1]
    assert entry["method"] == "POST"
    assert entry["body_length"] == len(body)
    headers = _headers(entry)
    assert headers["x-custom"] == "kept-value"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("declared_length", [False, True], ids=["chunked", "content-length"])
def test_call_local_stream_as_daprd_sends_it(peer: Peer, declared_length: bool) -> None:
    pieces = [b"a" * 1000, b"b" * 70_000, b"c" * 12_345]
    body = b"".join(pieces)
    path = f"stream-{'cl' if declared_length else 'chunked'}"
    metadata = _metadata(Content_Type="application/octet-stream", X_Custom="streamed")
    if declared_length:
        metadata["Content-Length"] = internals_pb2.ListStringValue(values=[str(len(body))])
    first = internals_pb2.InternalInvokeRequestStream(
        request=_invoke_request(path, metadata=metadata),
        payload=common_pb2.StreamPayload(data=pieces[0], seq=0),
    )
    assert not first.request.message.HasField("data")
    rest = [
        internals_pb2.InternalInvokeRequestStream(
            payload=common_pb2.StreamPayload(data=piece, seq=seq)
        )
        for seq, piece in enumerate(pieces[1:], start=1)
    ]
    replies = asyncio.run(_call_local_stream(peer.internal_address, [first, *rest]))

    assert replies, "no response messages"
    assert replies[0].HasField("response")
    assert replies[0].response.status.code == 200
    assert replies[0].response.headers["X-Echo"].values == ["yes"]
    assert all(not reply.HasField("response") for reply in replies[1:])
    seqs = [reply.payload.seq for reply in replies if reply.HasField("payload")]
    assert seqs == list(range(len(seqs)))
    answer = b"".join(reply.payload.data for reply in replies)
    echoed = json.loads(answer)
    assert echoed["path"] == "/" + path
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()

    entry = _entries_for(peer.app, "/" + path)[-1]
    assert entry["body_length"] == len(body)
    assert entry["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert _headers(entry)["x-custom"] == "streamed"


def test_call_local_stream_sequence_gap_fails(peer: Peer) -> None:
    first = internals_pb2.InternalInvokeRequestStream(
        request=_invoke_request("gap", metadata=_metadata(Content_Type="text/plain")),
        payload=common_pb2.StreamPayload(data=b"x" * 100, seq=0),
    )
    skipped = internals_pb2.InternalInvokeRequestStream(
        payload=common_pb2.StreamPayload(data=b"y" * 100, seq=2)
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        asyncio.run(_call_local_stream(peer.internal_address, [first, skipped]))
    # As daprd: the gap breaks the body on its way to the app, a channel error.
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert (failure.value.details() or "").startswith("error invoking app channel: ")
    assert "sequence gap" in (failure.value.details() or "")
    _sentinel(peer, "after-gap")
    # The app may have seen the start of the request, but never a whole one.
    assert _entries_for(peer.app, "/gap") == []


@pytest.mark.parametrize("case", ["first-seq-not-zero", "no-request-first"])
def test_call_local_stream_bad_leading_message_is_invalid_argument(peer: Peer, case: str) -> None:
    before = len(peer.app.received())
    payload = common_pb2.StreamPayload(data=b"z" * 10, seq=1 if case == "first-seq-not-zero" else 0)
    if case == "first-seq-not-zero":
        leading = internals_pb2.InternalInvokeRequestStream(
            request=_invoke_request("misframed"), payload=payload
        )
    else:
        leading = internals_pb2.InternalInvokeRequestStream(payload=payload)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        asyncio.run(_call_local_stream(peer.internal_address, [leading]))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(peer.app.received()) == before


def test_unspecified_api_version_is_unimplemented(peer: Peer) -> None:
    before = len(peer.app.received())
    request = _invoke_request("neworder", b"{}", ver=internals_pb2.APIVERSION_UNSPECIFIED)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        asyncio.run(_call_local(peer.internal_address, request))
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(peer.app.received()) == before


@pytest.mark.parametrize("method", ["bad\x00method", "order#fragment"], ids=["nul", "hash"])
def test_forbidden_method_is_invalid_argument(peer: Peer, method: str) -> None:
    before = len(peer.app.received())
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        asyncio.run(_call_local(peer.internal_address, _invoke_request(method, b"{}")))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _sentinel(peer, f"after-{method.encode().hex()}")
    received = peer.app.received()
    assert len(received) == before + 1  # only the sentinel
    assert all("method" not in str(entry["path"]) for entry in received[before:])


def test_app_error_status_is_an_http_status_not_a_grpc_error(peer: Peer) -> None:
    response = asyncio.run(_call_local(peer.internal_address, _invoke_request("status/503")))
    assert response.status.code == 503
    assert response.status.code >= 100  # IsHTTPResponse: an HTTP status, not a gRPC code
    assert json.loads(response.message.data.value) == {"status": 503}
    assert _entries_for(peer.app, "/status/503")


# ---------------------------------------------------------------------------
# Caller side: a Dapr-only peer (ServiceInvocation without tether's Multiplex).


@dataclass
class LegacyPeer(internals_pb2_grpc.ServiceInvocationServicer):  # type: ignore[misc]
    """Answers every CallLocalStream with 200 and one payload; records what it got."""

    streams: list[list[internals_pb2.InternalInvokeRequestStream]] = field(default_factory=list)
    unary: list[internals_pb2.InternalInvokeRequest] = field(default_factory=list)

    async def CallLocal(
        self, request: internals_pb2.InternalInvokeRequest, context: grpc.aio.ServicerContext
    ) -> internals_pb2.InternalInvokeResponse:
        self.unary.append(request)
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this peer only streams")
        raise AssertionError("abort returned")

    async def CallLocalStream(
        self,
        request_iterator: AsyncIterator[internals_pb2.InternalInvokeRequestStream],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[internals_pb2.InternalInvokeResponseStream]:
        received = [message async for message in request_iterator]
        self.streams.append(received)
        yield internals_pb2.InternalInvokeResponseStream(
            response=internals_pb2.InternalInvokeResponse(
                status=internals_pb2.Status(code=200),
                headers={"X-Legacy": internals_pb2.ListStringValue(values=["yes"])},
                message=common_pb2.InvokeResponse(content_type="text/plain"),
            ),
            payload=common_pb2.StreamPayload(data=b"legacy answer", seq=0),
        )


class MethodLog(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Records the full name of every RPC the legacy peer is asked for."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_service(
        self, continuation: Callable[..., Awaitable[object]], details: grpc.HandlerCallDetails
    ) -> object:
        self.methods.append(details.method)
        return await continuation(details)


def _register(registry: Path, registration_id: str, address: str) -> None:
    db = sqlite3.connect(registry, timeout=5)
    try:
        with db:
            db.execute(
                "INSERT OR REPLACE INTO hosts"
                " (registration_id, address, app_id, namespace, last_update)"
                " VALUES (?, ?, ?, ?, ?)",
                (registration_id, address, "legacy", "default", int(time.time())),
            )
    finally:
        db.close()


def _deregister(registry: Path, registration_id: str) -> None:
    db = sqlite3.connect(registry, timeout=5)
    try:
        with db:
            db.execute("DELETE FROM hosts WHERE registration_id = ?", (registration_id,))
    finally:
        db.close()


def test_caller_falls_back_to_call_local_stream_for_a_dapr_only_peer(peer: Peer) -> None:
    legacy = LegacyPeer()
    calls = MethodLog()
    registration_id = uuid.uuid4().hex

    async def main() -> list[tuple[int, bytes, str | None]]:
        server = grpc.aio.server(interceptors=[calls])
        internals_pb2_grpc.add_ServiceInvocationServicer_to_server(legacy, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        answers: list[tuple[int, bytes, str | None]] = []
        try:
            # The peer really lacks Multiplex: a direct Connect is UNIMPLEMENTED.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                connect = mux_pb2_grpc.MultiplexStub(channel).Connect(timeout=CALL_TIMEOUT)
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await connect.read()
                assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
            calls.methods.clear()
            for index in range(2):
                # Fresh last_update each time: rows go stale after 15 s.
                _register(peer.registry, registration_id, f"127.0.0.1:{port}")
                response = await asyncio.to_thread(
                    request,
                    peer.sidecar.http_port,
                    "POST",
                    "/v1.0/invoke/legacy/method/x",
                    body=f"call {index}".encode(),
                    headers={"Content-Type": "text/plain"},
                    timeout=CALL_TIMEOUT,
                )
                answers.append((response.status, response.body, response.headers.get("x-legacy")))
        finally:
            _deregister(peer.registry, registration_id)
            await server.stop(None)
        return answers

    answers = asyncio.run(main())

    assert answers == [(200, b"legacy answer", "yes")] * 2, peer.sidecar.log()
    assert legacy.unary == []
    # The sidecar first tried tether's multiplexed transport, then used Dapr's stream.
    assert calls.methods[0] == CONNECT, calls.methods
    assert calls.methods.count(CALL_LOCAL_STREAM) == 2, calls.methods
    assert set(calls.methods) == {CONNECT, CALL_LOCAL_STREAM}, calls.methods
    assert len(legacy.streams) == 2
    for index, messages in enumerate(legacy.streams):
        first = messages[0]
        assert first.HasField("request")
        assert first.request.ver == internals_pb2.V1
        assert first.request.message.method == "x"
        assert first.request.message.http_extension.verb == common_pb2.HTTPExtension.POST
        assert b"".join(m.payload.data for m in messages) == f"call {index}".encode()
        assert [m.payload.seq for m in messages if m.HasField("payload")] == list(
            range(sum(1 for m in messages if m.HasField("payload")))
        )
