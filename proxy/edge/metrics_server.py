"""Serving ``Metrics`` to Prometheus on ``--metrics-port`` (any path, like
daprd), and the adapter that feeds the API server's requests into them."""

from __future__ import annotations

from proxy.core.body import Body
from proxy.edge.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer, Observer
from proxy.observability.metrics import Metrics


def metrics_server(metrics: Metrics) -> HttpServer:
    async def scrape(request: HttpRequest) -> HttpResponse:
        body, content_type = metrics.exposition()
        return HttpResponse(200, [(b"content-type", content_type.encode())], Body(body))

    return HttpServer(scrape, HttpLimits())


def api_observer(metrics: Metrics) -> Observer:
    """dapr_http_server_* for each request served on the HTTP API port."""

    def observe(
        request: HttpRequest, status: int, latency_ms: float, received: int, sent: int
    ) -> None:
        metrics.http_server(request.verb, request.target, status, latency_ms, received, sent)

    return observe
