"""The metrics port of a sidecar with ``--workers N``: each scrape fetches every
worker's own exposition (from its private loopback port) and the supervisor's
process metrics, and answers with their merge (``observability.metrics_merge``).

A worker that does not answer (it is restarting) is left out of that scrape and
logged: the counters it held come back from zero when it is back, as they would
after a sidecar's restart.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
from collections.abc import Callable, Mapping

from proxy.core.body import Body
from proxy.edge.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer
from proxy.observability.metrics_merge import merge_expositions

log = logging.getLogger("tether.supervisor")

_FETCH_TIMEOUT = 5.0
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def fetch_exposition(port: int, timeout: float = _FETCH_TIMEOUT) -> str:
    """A worker's exposition from 127.0.0.1:``port`` (blocking; OSError on failure)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"status {response.status}")
        return body.decode()
    finally:
        connection.close()


def _own_process_exposition() -> str:
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    return generate_latest(registry).decode()


def merged_metrics_server(worker_ports: Callable[[], Mapping[int, int]]) -> HttpServer:
    """``worker_ports``: worker index -> its private metrics port, for the ready ones."""

    async def scrape(request: HttpRequest) -> HttpResponse:
        ports = dict(worker_ports())
        # Off the event loop, all at once: a slow worker must not hold the others.
        texts = await asyncio.gather(
            *(asyncio.to_thread(fetch_exposition, port) for port in ports.values()),
            return_exceptions=True,
        )
        parts: list[tuple[str, str]] = []
        for index, text in zip(ports, texts, strict=True):
            if isinstance(text, BaseException):
                log.warning("metrics of worker %d left out of this scrape: %s", index, text)
            else:
                parts.append((str(index), text))
        parts.append(("supervisor", _own_process_exposition()))
        body = merge_expositions(parts).encode()
        return HttpResponse(200, [(b"content-type", CONTENT_TYPE)], Body(body))

    return HttpServer(scrape, HttpLimits())
