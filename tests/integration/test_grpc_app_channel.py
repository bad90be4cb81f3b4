"""The gRPC app channel (proxy.app.grpc_channel) against a grpcio app on loopback:
OnInvoke's request and metadata as the app sees them, its status, header and trailer
metadata back, an unreachable app as UNAVAILABLE, --app-max-concurrency at the app,
a caller's cancellation reaching the app, and AppCallbackHealthCheck."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import uvloop

from proxy.app.grpc_channel import GrpcAppChannel
from proxy.protos import appcallback_pb2, appcallback_pb2_grpc, common_pb2
from tests.e2e.harness import free_port

T = TypeVar("T")
WAIT = 20.0


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(WAIT):
            return await main()

    return uvloop.run(bounded())


class App(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: list[tuple[common_pb2.InvokeRequest, dict[str, object]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = asyncio.Event()

    async def OnInvoke(self, request: common_pb2.InvokeRequest, context: Any) -> Any:
        self.seen.append((request, dict(context.invocation_metadata())))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request.method == "slow":
                await asyncio.sleep(0.2)
            elif request.method == "hang":
                try:
                    await asyncio.sleep(WAIT)
                except asyncio.CancelledError:
                    self.cancelled.set()
                    raise
            elif request.method == "bad":
                context.set_trailing_metadata((("x-t", "t1"),))
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not now")
        finally:
            self.in_flight -= 1
        await context.send_initial_metadata((("x-h", "h1"),))
        context.set_trailing_metadata((("x-t", "t1"),))
        response = common_pb2.InvokeResponse(content_type="text/plain")
        response.data.value = b"echo:" + request.data.value
        return response


class Health(appcallback_pb2_grpc.AppCallbackHealthCheckServicer):  # type: ignore[misc]
    async def HealthCheck(self, request: Any, context: Any) -> Any:
        return appcallback_pb2.HealthCheckResponse()


async def serve(app: App, health: bool = True) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(app, server)
    if health:
        appcallback_pb2_grpc.add_AppCallbackHealthCheckServicer_to_server(Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def request(method: str, data: bytes = b"x") -> common_pb2.InvokeRequest:
    message = common_pb2.InvokeRequest(method=method, content_type="application/json")
    message.data.value = data
    return message


def test_on_invoke_round_trip_and_error() -> None:
    async def main() -> None:
        app = App()
        server, port = await serve(app)
        channel = GrpcAppChannel("127.0.0.1", port, tls=False)
        try:
            metadata = ((b"x-custom", b"v"), (b"dapr-api-token", b"secret"))
            ok = await channel.invoke(request("hello", b"hi"), metadata)
            assert (ok.code, ok.message) == ("OK", "")
            assert ok.response is not None and ok.response.data.value == b"echo:hi"
            assert (b"x-h", b"h1") in ok.headers
            assert (b"x-t", b"t1") in ok.trailers
            seen, seen_metadata = app.seen[0]
            assert (seen.method, seen.content_type) == ("hello", "application/json")
            assert seen_metadata["x-custom"] == "v"
            assert seen_metadata["dapr-api-token"] == "secret"

            bad = await channel.invoke(request("bad"), ())
            assert (bad.code, bad.message, bad.response) == ("FAILED_PRECONDITION", "not now", None)
            assert (b"x-t", b"t1") in bad.trailers
            assert await channel.health_check(5.0)
        finally:
            await channel.close()
            await server.stop(None)

    run(main)


def test_unreachable_app_and_missing_health_service() -> None:
    async def main() -> None:
        nowhere = GrpcAppChannel("127.0.0.1", free_port(), tls=False)
        try:
            answer = await nowhere.invoke(request("hello"), ())
            assert answer.code == "UNAVAILABLE"
            assert not await nowhere.health_check(2.0)
        finally:
            await nowhere.close()
        server, port = await serve(App(), health=False)
        channel = GrpcAppChannel("127.0.0.1", port, tls=False)
        try:
            assert not await channel.health_check(5.0)  # UNIMPLEMENTED is not healthy
        finally:
            await channel.close()
            await server.stop(None)

    run(main)


def test_max_concurrency_and_cancellation_reach_the_app() -> None:
    async def main() -> None:
        app = App()
        server, port = await serve(app)
        limited = GrpcAppChannel("127.0.0.1", port, tls=False, max_concurrency=1)
        try:
            answers = await asyncio.gather(*(limited.invoke(request("slow"), ()) for _ in range(3)))
            assert [a.code for a in answers] == ["OK"] * 3
            assert app.max_in_flight == 1

            call = asyncio.ensure_future(limited.invoke(request("hang"), ()))
            while not any(seen.method == "hang" for seen, _ in app.seen):
                await asyncio.sleep(0.01)
            call.cancel()
            await asyncio.wait_for(app.cancelled.wait(), WAIT / 2)
            # The slot came back: the next call goes through.
            again = await limited.invoke(request("hello"), ())
            assert again.code == "OK"
        finally:
            await limited.close()
            await server.stop(None)

    run(main)
