"""The invoker tells the resolver about every call it sends: started, then finished with
its latency and whether the instance was reachable. A refused connection is a
connection failure (outlier ejection counts it); an answered call is not, whatever its
status; an unknown app fails at once, without the retries Dapr's built-in policy makes."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from bench.ports import free_port
from proxy.core.body import Body
from proxy.discovery.registry import Endpoint
from proxy.discovery.resolver import AppNotFoundError
from proxy.hop.call import Invocation, InvokeError
from proxy.hop.callee import Callee
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.internal_client import InternalClient
from proxy.hop.invoker import Invoker
from proxy.hop.request_builder import Locality
from proxy.protos import internals_pb2_grpc
from resiliency import ResiliencyEngine
from resiliency.loader import load_texts

BOUND = 20.0


class Recording:
    """A resolver that always answers ``endpoint`` and records what it is told."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.events: list[tuple[str, Endpoint, bool | None]] = []
        self.resolved = 0

    async def resolve(self, app_id: str, namespace: str) -> Endpoint:
        self.resolved += 1
        if app_id == "missing":
            raise AppNotFoundError("app id missing not found in namespace default")
        return self.endpoint

    def started(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        self.events.append(("started", endpoint, None))

    def finished(
        self, app_id: str, namespace: str, endpoint: Endpoint, latency: float, ok: bool
    ) -> None:
        assert latency >= 0
        self.events.append(("finished", endpoint, ok))

    def evict(self, app_id: str, namespace: str, endpoint: Endpoint) -> None:
        self.events.append(("evict", endpoint, False))

    async def close(self) -> None:
        pass


class Refusing(internals_pb2_grpc.ServiceInvocationServicer):  # type: ignore[misc]
    async def CallLocalStream(self, requests: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.INTERNAL, "the app broke")


def closed_port() -> int:
    # Outside the kernel's ephemeral range, so no client socket takes it meanwhile.
    return free_port()


def invoker(resolver: Recording, client: InternalClient) -> Invoker:
    config, report = load_texts([], "checkout")
    assert not report.problems
    return Invoker(
        Locality(CallerIdentity("checkout", "default"), "public", "127.0.0.1", "here"),
        resolver,
        client,
        Callee(app=None, app_api_token=None),
        ResiliencyEngine(config),
        replay_limit=1024 * 1024,
    )


def call(app_id: str) -> Invocation:
    return Invocation(app_id, "m", "POST", "/m", "", [], Body(b"{}"))


def test_a_refused_connection_is_reported_as_a_connection_failure() -> None:
    async def main() -> list[tuple[str, Endpoint, bool | None]]:
        resolver = Recording(Endpoint("127.0.0.1", closed_port()))
        client = InternalClient(None, 4 * 1024 * 1024)
        try:
            with contextlib.suppress(InvokeError):
                await invoker(resolver, client).invoke(call("orders"))
        finally:
            await client.close()
        return resolver.events

    events = asyncio.run(asyncio.wait_for(main(), BOUND))
    assert events and len(events) % 2 == 0  # Dapr's built-in retries: each one reported
    assert events[0][0] == "started"
    assert all(ok is False for kind, _, ok in events if kind == "finished")


def test_an_answered_call_is_reachable_even_when_it_fails() -> None:
    async def main() -> list[tuple[str, Endpoint, bool | None]]:
        server = grpc.aio.server()
        internals_pb2_grpc.add_ServiceInvocationServicer_to_server(Refusing(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        resolver = Recording(Endpoint("127.0.0.1", port))
        client = InternalClient(None, 4 * 1024 * 1024)
        try:
            with contextlib.suppress(InvokeError):
                await invoker(resolver, client).invoke(call("orders"))
        finally:
            await client.close()
            await server.stop(None)
        return resolver.events

    events = asyncio.run(asyncio.wait_for(main(), BOUND))
    finished = [ok for kind, _, ok in events if kind == "finished"]
    assert finished and all(finished)


def test_an_unknown_app_is_not_retried() -> None:
    async def main() -> int:
        resolver = Recording(Endpoint("127.0.0.1", closed_port()))
        client = InternalClient(None, 4 * 1024 * 1024)
        try:
            try:
                await invoker(resolver, client).invoke(call("missing"))
            except InvokeError as exc:
                assert "not found" in str(exc)
        finally:
            await client.close()
        return resolver.resolved

    assert asyncio.run(asyncio.wait_for(main(), BOUND)) == 1
