"""The HTTP API on ``--dapr-http-port``: token check, health, metadata,
shutdown, and service invocation. Errors become Dapr's JSON here."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from proxy.app.health import AppHealthState, HealthCheckSettings
from proxy.core.body import Body
from proxy.core.errors import InvalidMethod
from proxy.core.version import RUNTIME_VERSION
from proxy.edge import dapr_errors
from proxy.edge.http_server import HttpRequest, HttpResponse
from proxy.edge.routing import Api, Route, route_request
from proxy.hop.call import Answer, Invocation, InvokeError

_JSON = [(b"content-type", b"application/json")]

# The invoker's entry point (Invoker.invoke): an answer, or InvokeError.
Invoke = Callable[[Invocation], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class AppConnection:
    port: int | None
    protocol: str
    channel_address: str
    max_concurrency: int


class ApiHandler:
    def __init__(
        self,
        app_id: str,
        invoke: Invoke,
        app_connection: AppConnection,
        api_token: str | None,
        is_ready: Callable[[], bool],
        request_shutdown: Callable[[], None],
        app_health: tuple[HealthCheckSettings, AppHealthState] | None = None,
        certificate_problem: Callable[[], str | None] | None = None,
    ) -> None:
        self._app_health = app_health
        # With mTLS: why the workload certificate cannot be trusted to work (None: it can).
        self._certificate_problem = certificate_problem
        self._app_id = app_id
        self._invoke = invoke
        self._app_connection = app_connection
        self._api_token = api_token.encode("latin-1") if api_token else None
        self._is_ready = is_ready
        self._request_shutdown = request_shutdown

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        app_id_header = authorization = token = None
        for name, value in request.headers:
            if name == b"dapr-app-id":
                app_id_header = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"dapr-api-token":
                token = value
        try:
            route = route_request(request.verb, request.target, app_id_header, authorization)
        except InvalidMethod as exc:
            return HttpResponse.of(dapr_errors.direct_invoke_failed("", str(exc), 400))
        api = route.api
        if api is Api.HEALTHZ:
            return self._healthz(request.target)
        if api is Api.HEALTHZ_OUTBOUND:
            return self._healthz_outbound()
        if self._api_token is not None and (
            token is None or not hmac.compare_digest(token, self._api_token)
        ):
            return HttpResponse.of(dapr_errors.invalid_api_token())
        if api is Api.INVOKE:
            return await self._invoke_app(route, request)
        if api is Api.METADATA:
            return self._metadata()
        if api is Api.SHUTDOWN:
            self._request_shutdown()
            return HttpResponse(204, [])
        return HttpResponse.of(dapr_errors.no_app_id())

    async def _invoke_app(self, route: Route, request: HttpRequest) -> HttpResponse:
        call = Invocation(
            target_id=route.target_id,
            method=route.method,
            verb=request.verb,
            path=request.target.partition("?")[0],
            query=route.query,
            headers=request.headers,
            body=request.body,
            id_header=route.id_header,
        )
        try:
            answer = await self._invoke(call)
        except InvokeError as exc:
            response = HttpResponse.of(dapr_errors.invoke_failed(exc))
            if exc.traceparent is not None:
                response.headers.append((b"traceparent", exc.traceparent.encode()))
            return response
        return HttpResponse(answer.status, answer.headers, answer.body)

    def _healthz(self, target: str) -> HttpResponse:
        query = parse_qs(target.partition("?")[2])
        wanted = query.get("appid")
        if wanted and wanted[0] != self._app_id:
            return HttpResponse.of(
                dapr_errors.error_json(
                    500,
                    dapr_errors.ERR_HEALTH_APPID_NOT_MATCH,
                    "dapr app-id does not match",
                )
            )
        if not self._is_ready():
            return HttpResponse.of(
                dapr_errors.error_json(
                    500, dapr_errors.ERR_HEALTH_NOT_READY, "dapr is not ready: [servers]"
                )
            )
        if self._certificate_unusable():
            return HttpResponse.of(
                dapr_errors.error_json(
                    500, dapr_errors.ERR_HEALTH_NOT_READY, "dapr is not ready: [certificate]"
                )
            )
        if self._app_health is not None and not self._app_health[1].healthy:
            return HttpResponse.of(
                dapr_errors.error_json(
                    500, dapr_errors.ERR_HEALTH_NOT_READY, "dapr is not ready: [app health]"
                )
            )
        return HttpResponse(204, [])

    def _certificate_unusable(self) -> bool:
        return self._certificate_problem is not None and self._certificate_problem() is not None

    def _healthz_outbound(self) -> HttpResponse:
        # Calls to other sidecars need the certificate: expired, they would all fail.
        if not self._is_ready() or self._certificate_unusable():
            return HttpResponse.of(
                dapr_errors.error_json(
                    500, dapr_errors.ERR_OUTBOUND_HEALTH_NOT_READY, "dapr outbound is not ready"
                )
            )
        return HttpResponse(204, [])

    def _metadata(self) -> HttpResponse:
        conn = self._app_connection
        properties: dict[str, object] = {
            "protocol": conn.protocol,
            "channelAddress": conn.channel_address,
        }
        if conn.port is not None:
            properties["port"] = conn.port
        if conn.max_concurrency > 0:
            properties["maxConcurrency"] = conn.max_concurrency
        if self._app_health is not None:
            health = self._app_health[0]
            properties["health"] = {
                "healthCheckPath": health.path,
                "healthProbeInterval": f"{health.interval:g}s",
                "healthProbeTimeout": f"{health.timeout * 1000:g}ms",
                "healthThreshold": health.threshold,
            }
        document = {
            "id": self._app_id,
            "runtimeVersion": RUNTIME_VERSION,
            "enabledFeatures": [],
            "actors": [],
            "components": [],
            "extended": {},
            "subscriptions": [],
            "httpEndpoints": [],
            "appConnectionProperties": properties,
        }
        return HttpResponse(200, list(_JSON), Body(json.dumps(document).encode()))
