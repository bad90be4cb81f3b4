"""The invoker's metrics for hops that fail, with the real ``Metrics``, the real
``InternalClient`` and a peer on loopback.

The peer is what a daprd sidecar looks like to tether: it serves Dapr's
``ServiceInvocation`` and not tether's ``Multiplex`` (so each call falls back
from the multiplexed stream to ``CallLocalStream``), and it refuses every call
with the gRPC status its method names, or holds it until the caller gives up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.core.body import Body
from proxy.discovery.balanced_resolver import BalancedResolver
from proxy.discovery.probe import TcpProber
from proxy.discovery.registry import Endpoint, Registration, SqliteRegistry
from proxy.discovery.sqlite_source import SqliteSource
from proxy.hop.call import Answer, Invocation, InvokeDenied, InvokeError
from proxy.hop.callee import Callee
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.internal_client import InternalClient
from proxy.hop.invoker import Invoker
from proxy.hop.request_builder import Locality
from proxy.observability.metrics import Metrics
from proxy.protos import internals_pb2_grpc
from resiliency import ResiliencyEngine
from resiliency.loader import load_texts

CALL_LOCAL_STREAM = "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream"
BOUND = 10.0  # seconds any one step may take on a slow machine

RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: hops}
spec:
  policies:
    timeouts:
      short: 200ms
  targets:
    apps:
      slow: {timeout: short}
"""


class DaprPeer(internals_pb2_grpc.ServiceInvocationServicer):  # type: ignore[misc]
    """Refuses ``<code>`` calls with that gRPC status; holds ``hold`` calls open."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()

    async def CallLocalStream(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        method = first.request.message.method
        if method == "hold":
            self.holding.set()
            await asyncio.Event().wait()  # until the caller cancels the RPC
        await context.abort(grpc.StatusCode[method.upper()], f"refused {method}")


def run(scenario: Callable[[Invoker, DaprPeer], Awaitable[None]], tmp_path: Path) -> Metrics:
    """Run ``scenario`` against a fresh peer; return the caller's metrics."""
    metrics = Metrics("checkout")

    async def main() -> None:
        peer = DaprPeer()
        registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
        servers = []
        for app_id in ("orders", "slow"):  # one address each: the registry keeps one per address
            server = grpc.aio.server()
            servers.append(server)
            internals_pb2_grpc.add_ServiceInvocationServicer_to_server(peer, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            endpoint = Endpoint("127.0.0.1", port)
            registry.register(Registration(app_id, app_id, "default", endpoint))
        client = InternalClient(None, 4 * 1024 * 1024)
        config, report = load_texts([("resiliency.yaml", RESILIENCY)], "checkout")
        assert not report.problems
        invoker = Invoker(
            Locality(CallerIdentity("checkout", "default"), "public", "127.0.0.1", "here"),
            BalancedResolver(
                SqliteSource(registry, None), clock=time.monotonic, probe=TcpProber(1.0)
            ),
            client,
            Callee(app=None, app_api_token=None),
            ResiliencyEngine(config),
            replay_limit=1024 * 1024,
            metrics=metrics,
        )
        try:
            await asyncio.wait_for(scenario(invoker, peer), BOUND)
        finally:
            await client.close()
            for server in servers:
                await server.stop(None)
            registry.close()

    asyncio.run(main())
    return metrics


def call(app_id: str, method: str) -> Invocation:
    return Invocation(app_id, method, "POST", f"/{method}", "", [], Body(b"{}"))


def completed(metrics: Metrics) -> dict[tuple[str, str], float]:
    """(grpc_client_method, grpc_client_status) -> RPCs, as Prometheus would scrape them."""
    text, _ = metrics.exposition()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.startswith("dapr_grpc_io_client_completed_rpcs"):
                key = (sample.labels["grpc_client_method"], sample.labels["grpc_client_status"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


@pytest.mark.parametrize(
    ("code", "error"),
    [("permission_denied", InvokeDenied), ("internal", InvokeError), ("not_found", InvokeError)],
)
def test_a_refused_hop_counts_with_the_peers_status(
    code: str, error: type[InvokeError], tmp_path: Path
) -> None:
    async def scenario(invoker: Invoker, peer: DaprPeer) -> None:
        with pytest.raises(error):
            await invoker.invoke(call("orders", code))

    assert completed(run(scenario, tmp_path)) == {(CALL_LOCAL_STREAM, code.upper()): 1.0}


def test_a_hop_cut_by_a_timeout_policy_counts_as_deadline_exceeded(tmp_path: Path) -> None:
    async def scenario(invoker: Invoker, peer: DaprPeer) -> None:
        with pytest.raises(InvokeError, match="context deadline exceeded"):
            await invoker.invoke(call("slow", "hold"))

    assert completed(run(scenario, tmp_path)) == {(CALL_LOCAL_STREAM, "DEADLINE_EXCEEDED"): 1.0}


def test_a_hop_cancelled_without_a_timeout_policy_counts_as_cancelled(tmp_path: Path) -> None:
    async def scenario(invoker: Invoker, peer: DaprPeer) -> None:
        pending: asyncio.Task[Answer] = asyncio.create_task(invoker.invoke(call("orders", "hold")))
        await peer.holding.wait()
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending

    assert completed(run(scenario, tmp_path)) == {(CALL_LOCAL_STREAM, "CANCELLED"): 1.0}
