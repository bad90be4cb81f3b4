"""The gRPC channel from the callee sidecar to its local app (``--app-protocol grpc``
or ``grpcs``): Dapr's ``AppCallback/OnInvoke`` and ``AppCallbackHealthCheck/
HealthCheck`` over the lean gRPC client, h2c for grpc and TLS for grpcs without
verifying the app's certificate (daprd's ``InsecureSkipVerify``: the app is on the
sidecar's own host and usually serves a self-signed certificate)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from proxy.grpcwire.client import Channel, ClientSettings, ClientStream, RpcError, Status
from proxy.protos import common_pb2

ON_INVOKE = "/dapr.proto.runtime.v1.AppCallback/OnInvoke"
HEALTH_CHECK = "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck"

Metadata = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class GrpcAppAnswer:
    """How one OnInvoke call ended, as daprd's gRPC channel keeps it: the status
    (a gRPC code name and message), the app's header and trailer metadata as
    received, and its InvokeResponse (None unless the status is OK)."""

    code: str
    message: str
    headers: list[tuple[bytes, bytes]]
    trailers: list[tuple[bytes, bytes]]
    response: common_pb2.InvokeResponse | None


def insecure_tls_context() -> ssl.SSLContext:
    """TLS towards a grpcs app: any certificate accepted (as daprd), HTTP/2 by ALPN."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


# grpcio servers answer pings more often than every 5 minutes on a quiet connection
# with GOAWAY (too_many_pings): towards the app, keepalive stays that rare.
APP_KEEPALIVE = 600.0


class GrpcAppChannel:
    """Calls the app at ``host:port``. ``max_concurrency`` < 1 means unlimited
    (``--app-max-concurrency``); a slot is held for the whole call. OnInvoke has no
    deadline (daprd calls the app with a background context, as its HTTP channel)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        max_concurrency: int = -1,
        max_message_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.max_message_size = max_message_size
        settings = ClientSettings(max_message_size, keepalive_time=APP_KEEPALIVE)
        self._channel = Channel(host, port, settings, insecure_tls_context() if tls else None)
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None

    async def invoke(self, request: common_pb2.InvokeRequest, metadata: Metadata) -> GrpcAppAnswer:
        """OnInvoke; any failure (the app's status, or no connection) is in the answer."""
        slots = self._slots
        if slots is not None:
            await slots.acquire()
        try:
            return await self._invoke(request.SerializeToString(), metadata)
        finally:
            if slots is not None:
                slots.release()

    async def _invoke(self, request: bytes, metadata: Metadata) -> GrpcAppAnswer:
        try:
            stream = await self._channel.open(ON_INVOKE, metadata)
        except RpcError as exc:
            return GrpcAppAnswer(exc.code, exc.message, [], [], None)
        reply, status = await _unary(stream, request)
        code, message = status.code, status.message
        response = None
        if code == "OK":
            try:
                if reply is None:
                    raise DecodeError("no response message")
                response = common_pb2.InvokeResponse.FromString(reply)
            except DecodeError as exc:
                code, message = "INTERNAL", f"grpc: failed to unmarshal the response: {exc}"
        return GrpcAppAnswer(code, message, stream.response_headers, stream.trailers, response)

    async def health_check(self, timeout: float) -> bool:
        """AppCallbackHealthCheck/HealthCheck within ``timeout`` s: OK is healthy."""
        try:
            async with asyncio.timeout(timeout):
                stream = await self._channel.open(HEALTH_CHECK, (), timeout)
                _, status = await _unary(stream, b"")  # google.protobuf.Empty
        except (TimeoutError, RpcError):
            return False
        return status.ok

    async def close(self) -> None:
        self._channel.close()
        await asyncio.sleep(0)  # let the transport finish closing


async def _unary(stream: ClientStream, request: bytes) -> tuple[bytes | None, Status]:
    """Send the one request message; the reply (None when there is none) and the
    status. The call is cancelled at the app when we are."""
    try:
        reply = None
        try:
            stream.write(request)
            stream.end()
            reply = await stream.read()
        except RpcError:
            pass  # the call is over: its status says why
        return reply, await stream.status()
    except BaseException:
        stream.cancel()
        raise
