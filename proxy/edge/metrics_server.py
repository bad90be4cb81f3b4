"""Serving ``Metrics`` to Prometheus on ``--metrics-port`` (any path, like
daprd), and the adapter that feeds the API server's requests into them."""

from __future__ import annotations

import asyncio
import gzip

from proxy.core.body import Body
from proxy.edge.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer, Observer
from proxy.observability.metrics import Metrics


def metrics_server(metrics: Metrics) -> HttpServer:
    return HttpServer(Scraper(metrics).scrape, HttpLimits())


class Scraper:
    """Builds the exposition in a worker thread, one at a time.

    With the series caps full an exposition is megabytes and takes a second of CPU;
    built on the event loop it stalled every call for that long. In a thread the loop
    keeps running (it gets the GIL back every switch interval), and scrapes that
    arrive while one is being built share its result instead of each building one.
    A scraper that accepts gzip (Prometheus does) gets it, compressed in the thread
    too: a full exposition of 5 MB goes out as about 120 KB.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._building: asyncio.Future[tuple[bytes, str]] | None = None

    async def scrape(self, request: HttpRequest) -> HttpResponse:
        building = self._building
        if building is None:
            building = asyncio.ensure_future(asyncio.to_thread(self._metrics.exposition))
            building.add_done_callback(self._built)
            self._building = building
        # Shielded: a scraper that hangs up must not cancel the build others share.
        body, content_type = await asyncio.shield(building)
        headers = [(b"content-type", content_type.encode())]
        if _accepts_gzip(request):
            # Level 1: most of the size for a fraction of the CPU of the default level.
            body = await asyncio.to_thread(gzip.compress, body, 1)
            headers.append((b"content-encoding", b"gzip"))
        return HttpResponse(200, headers, Body(body))

    def _built(self, _: asyncio.Future[tuple[bytes, str]]) -> None:
        self._building = None


def _accepts_gzip(request: HttpRequest) -> bool:
    return any(
        name == b"accept-encoding" and b"gzip" in value.lower() for name, value in request.headers
    )


def api_observer(metrics: Metrics) -> Observer:
    """dapr_http_server_* for each request served on the HTTP API port."""

    def observe(
        request: HttpRequest, status: int, latency_ms: float, received: int, sent: int
    ) -> None:
        metrics.http_server(request.verb, request.target, status, latency_ms, received, sent)

    return observe
