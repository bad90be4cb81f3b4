"""The caller half of service invocation: an HTTP request for another app
becomes an ``InternalInvokeRequest`` sent to the target's sidecar (or, for
our own app ID, straight to the local app channel, as daprd does)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from certs.errors import InvalidSpiffeId
from certs.spiffe import SpiffeId
from proxy import dapr_errors
from proxy.body import Body
from proxy.callee import Callee
from proxy.errors import CallRejected, InvalidAppId, InvocationFailed
from proxy.header_rules import (
    CallerIdentity,
    client_response_headers,
    outbound_metadata,
    strip_hop_by_hop,
)
from proxy.http_server import HttpRequest, HttpResponse
from proxy.internal_client import InternalClient
from proxy.name_resolution import ResolveError, Resolver
from proxy.protos import common_pb2, internals_pb2
from proxy.routing import Route, split_app_id

log = logging.getLogger("tether.invoke")

# Verbs the HTTP extension names; anything else travels as POST (Dapr's rule).
_VERBS = frozenset(common_pb2.HTTPExtension.Verb.keys()) - {"NONE"}
# Connection-level failures after which the endpoint and channel are dropped.
_CONNECTION_CODES = frozenset({"UNAVAILABLE", "UNAUTHENTICATED"})


@dataclass(frozen=True, slots=True)
class Locality:
    identity: CallerIdentity
    trust_domain: str
    host_ip: str
    hostname: str


class Invoker:
    def __init__(
        self,
        locality: Locality,
        resolver: Resolver,
        client: InternalClient,
        callee: Callee,
    ) -> None:
        self._here = locality
        self._resolver = resolver
        self._client = client
        self._callee = callee

    async def invoke(self, route: Route, request: HttpRequest) -> HttpResponse:
        local = self._here.identity
        try:
            target = split_app_id(route.target_id, local.namespace)
        except InvalidAppId as exc:
            return HttpResponse.of(dapr_errors.direct_invoke_failed(route.target_id, str(exc)))
        message = self._internal_request(route, request, target.app_id)
        if target.app_id == local.app_id and target.namespace == local.namespace:
            return await self._invoke_local(route.target_id, message, request.body)
        try:
            peer = SpiffeId(self._here.trust_domain, target.namespace, target.app_id)
            endpoint = await self._resolver.resolve(target.app_id, target.namespace)
        except (ResolveError, InvalidSpiffeId) as exc:
            return HttpResponse.of(dapr_errors.direct_invoke_failed(route.target_id, str(exc)))
        try:
            remote = await self._client.invoke(endpoint, peer, message, request.body)
        except InvocationFailed as exc:
            if exc.grpc_code in _CONNECTION_CODES:
                self._resolver.evict(target.app_id, target.namespace, endpoint)
                self._client.discard(endpoint, peer)
            status = 403 if exc.grpc_code == "PERMISSION_DENIED" else 500
            log.debug("invoke %s failed: %s %s", route.target_id, exc.grpc_code, exc)
            return HttpResponse.of(
                dapr_errors.direct_invoke_failed(route.target_id, _describe(exc), status)
            )
        status = remote.status
        if status < 100:
            # A gRPC status from a gRPC app: Dapr's HTTPStatusFromCode.
            status = dapr_errors.http_status_from_grpc(dapr_errors.grpc_code_name(status))
        headers = client_response_headers(remote.headers, remote.content_type)
        return HttpResponse(status, headers, remote.body)

    def _internal_request(
        self, route: Route, request: HttpRequest, callee_app_id: str
    ) -> internals_pb2.InternalInvokeRequest:
        here = self._here
        metadata = outbound_metadata(
            request.headers,
            caller=here.identity,
            callee_app_id=callee_app_id,
            host_ip=here.host_ip,
            hostname=here.hostname,
            drop=route.id_header,
        )
        body = request.body
        if "Content-Length" not in metadata and body.complete:
            # Lets the callee see at once that the first message holds the whole body.
            metadata["Content-Length"] = [str(len(body.head))]
        content_type = ""
        for name, value in request.headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break
        return internals_pb2.InternalInvokeRequest(
            ver=internals_pb2.V1,
            metadata={k: internals_pb2.ListStringValue(values=v) for k, v in metadata.items()},
            message=common_pb2.InvokeRequest(
                method=route.method,
                content_type=content_type,
                http_extension=common_pb2.HTTPExtension(
                    verb=request.verb if request.verb in _VERBS else "POST",
                    querystring=route.query,
                ),
            ),
        )

    async def _invoke_local(
        self, target_id: str, message: internals_pb2.InternalInvokeRequest, body: Body
    ) -> HttpResponse:
        try:
            response = await self._callee.serve(message, body, self._here.identity)
        except CallRejected as exc:
            # For a broken request body the edge answers 400/413 in place of this.
            status = 400 if exc.code == "INVALID_ARGUMENT" else 500
            return HttpResponse.of(dapr_errors.direct_invoke_failed(target_id, str(exc), status))
        return HttpResponse(response.status, strip_hop_by_hop(response.headers), response.body)


def _describe(exc: InvocationFailed) -> str:
    return f"rpc error: code = {exc.grpc_code.title().replace('_', '')} desc = {exc}"
