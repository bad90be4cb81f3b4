"""A scrape builds the exposition off the event loop, and concurrent scrapes share it."""

from __future__ import annotations

import asyncio
import gzip
import threading
from typing import Any, cast

from proxy.core.body import Body
from proxy.edge.http_messages import HttpRequest, HttpResponse
from proxy.edge.metrics_server import Scraper


class SlowMetrics:
    """An exposition that takes as long as the test says (as a full series cap does)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.builds = 0

    def exposition(self) -> tuple[bytes, str]:
        self.builds += 1
        self.started.set()
        self.release.wait(10)  # bounded: on the event loop this would stall it
        return b"dapr_x 1\n", "text/plain; version=0.0.4"


def test_the_loop_runs_while_an_exposition_is_built_and_scrapes_share_it() -> None:
    metrics = SlowMetrics()
    scraper = Scraper(cast(Any, metrics))
    request = HttpRequest("GET", "/metrics", [], Body())

    async def scenario() -> tuple[int, list[int]]:
        first = asyncio.ensure_future(scraper.scrape(request))
        second = asyncio.ensure_future(scraper.scrape(request))
        await asyncio.to_thread(metrics.started.wait, 10)
        # The loop is free while the thread builds: other work goes on.
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0)
            ticks += 1
        assert not first.done()
        metrics.release.set()
        answers = await asyncio.gather(first, second)
        return ticks, [answer.status for answer in answers]

    ticks, statuses = asyncio.run(scenario())
    assert ticks == 20 and statuses == [200, 200]
    assert metrics.builds == 1


def test_a_later_scrape_builds_afresh() -> None:
    metrics = SlowMetrics()
    metrics.release.set()
    scraper = Scraper(cast(Any, metrics))
    request = HttpRequest("GET", "/metrics", [], Body())

    async def scenario() -> None:
        await scraper.scrape(request)
        await scraper.scrape(request)

    asyncio.run(scenario())
    assert metrics.builds == 2


def test_a_scraper_that_accepts_gzip_gets_it() -> None:
    metrics = SlowMetrics()
    metrics.release.set()
    scraper = Scraper(cast(Any, metrics))

    async def scenario() -> tuple[HttpResponse, HttpResponse]:
        plain = await scraper.scrape(HttpRequest("GET", "/metrics", [], Body()))
        wanted = [(b"accept-encoding", b"gzip")]
        zipped = await scraper.scrape(HttpRequest("GET", "/metrics", wanted, Body()))
        return plain, zipped

    plain, zipped = asyncio.run(scenario())
    assert (b"content-encoding", b"gzip") not in plain.headers
    assert (b"content-encoding", b"gzip") in zipped.headers
    assert gzip.decompress(zipped.body.head) == plain.body.head == b"dapr_x 1\n"
