"""An HTTP/1.1 load generator on uvloop with persistent keep-alive connections.

Two modes:

* open loop (``--rate R``): request *i* is due at ``t0 + i / R`` and goes to
  whichever connection is idle; when none is, it waits in a queue (counted).
  Latency runs from the *scheduled* time, so queueing shows and there is no
  coordinated omission.
* closed loop (``--rate 0``): every connection sends its next request as soon
  as the previous answer is in, until the duration is over.

Run it as its own process so its CPU is not charged to what it measures::

    python -m bench.loadgen --url http://127.0.0.1:3500/v1.0/invoke/orders/method/bench \\
        --rate 1000 --duration 20 --warmup 3 --warmup-rate 100

With ``--handshake`` it prints ``WARMED`` after the warm-up and waits for a line
on stdin before the measured window, then prints ``DONE`` as soon as that window
(including the drain of requests in flight) is over, so a parent can sample
other processes' CPU around exactly the measured requests. The result is one
JSON line at the end of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import uvloop

clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
MAX_RESPONSE_HEAD = 64 * 1024
DRAIN_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds
    service: list[float] = field(default_factory=list)  # seconds, from write to answer
    lag: list[float] = field(default_factory=list)  # seconds, scheduled time to write
    errors: int = 0
    status: collections.Counter[int] = field(default_factory=collections.Counter)
    queued: int = 0  # open loop: requests that found no idle connection
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


Done = Callable[["Connection", bool], None]
Lost = Callable[["Connection"], None]


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, stats: Stats, on_done: Done, on_lost: Lost) -> None:
        self.stats = stats
        self.on_done = on_done
        self.on_lost = on_lost
        self.dead = False
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._busy = False
        self._scheduled = 0.0
        self._sent = 0.0
        self._status = 0
        self._need = -1  # body bytes still expected; -1 while reading the head
        self._chunked = False
        self._close = False

    # -- asyncio.Protocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if self._busy:
            self._busy = False
            self.dead = True
            self.stats.error(f"connection lost: {exc!r}")
            self.on_done(self, False)
        elif not self.dead:
            self.dead = True
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            self._kill()  # unsolicited bytes: not HTTP we understand
            return
        self._buffer += data
        self._parse()

    # -- requests ----------------------------------------------------------
    def send(self, request: bytes, scheduled: float) -> None:
        transport = self.transport
        assert transport is not None and not self._busy
        self._busy = True
        self._scheduled = scheduled
        self._sent = clock()
        self._status = 0
        self._need = -1
        transport.write(request)

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.dead

    def _kill(self) -> None:
        if not self.dead:
            self.dead = True
            if self.transport is not None:
                self.transport.close()

    def _parse(self) -> None:
        buffer = self._buffer
        if self._need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_RESPONSE_HEAD:
                    self._fail("response head too large")
                return
            head = bytes(buffer[:end]).lower()
            del buffer[: end + 4]
            try:
                self._status = int(head[9:12])
            except ValueError:
                self._fail(f"bad status line {head[:40]!r}")
                return
            self._close = b"\r\nconnection: close" in head
            self._chunked = b"\r\ntransfer-encoding: chunked" in head
            self._need = 0 if self._chunked else _content_length(head)
            if self._need < 0:
                self._fail("response without a usable Content-Length")
                return
        if self._chunked:
            if not self._skip_chunks():
                return
        elif len(buffer) < self._need:
            return
        else:
            del buffer[: self._need]
        self._finish()

    def _skip_chunks(self) -> bool:
        """Consume chunks from the buffer; True once the last chunk and trailers are in."""
        buffer = self._buffer
        while True:
            if self._need > 0:  # inside a chunk's data (+ its CRLF)
                if len(buffer) < self._need:
                    return False
                del buffer[: self._need]
                self._need = 0
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return False
            size_text = bytes(buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self._fail("bad chunk size")
                return False
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end == line_end:  # no trailers: "0\r\n\r\n"
                    del buffer[: line_end + 4]
                    return True
                if trailer_end < 0:
                    return False
                del buffer[: trailer_end + 4]
                return True
            del buffer[: line_end + 2]
            self._need = size + 2

    def _finish(self) -> None:
        now = clock()
        self._busy = False
        stats = self.stats
        ok = 200 <= self._status < 300
        stats.status[self._status] += 1
        if ok:
            stats.latencies.append(now - self._scheduled)
            stats.service.append(now - self._sent)
            stats.lag.append(self._sent - self._scheduled)
        else:
            stats.error(f"HTTP {self._status}")
        if self._buffer or self._close:  # bytes past the answer, or the server says close
            self._buffer.clear()
            self._kill()
        self.on_done(self, ok)

    def _fail(self, what: str) -> None:
        self._busy = False
        self.stats.error(what)
        self._kill()
        self.on_done(self, False)


def _content_length(head: bytes) -> int:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return -1
    start = at + len(b"\r\ncontent-length:")
    end = head.find(b"\r\n", start)
    try:
        return int(head[start:] if end < 0 else head[start:end])
    except ValueError:
        return -1


def build_request(url: str, body_size: int) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported: {url!r}")
    host, port = parts.hostname, parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    body = b"b" * body_size
    request = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body
    return host, port, request


class Pool:
    """The connections, and the work that waits for one of them."""

    def __init__(self, host: str, port: int, request: bytes, size: int) -> None:
        self.host, self.port, self.request, self.size = host, port, request, size
        self.stats = Stats()
        self.idle: collections.deque[Connection] = collections.deque()
        self.waiting: collections.deque[float] = collections.deque()  # scheduled times
        self.in_flight = 0
        self.closed_loop_until = 0.0  # closed loop: send again until this clock()
        self.reconnects = 0
        self._all: list[Connection] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._settled = asyncio.Event()

    async def open(self) -> None:
        results = await asyncio.gather(
            *(self._connect() for _ in range(self.size)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if len(failures) == self.size:
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {failures[0]!r}")

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: Connection(self.stats, self._done, self._lost), self.host, self.port
            ),
            CONNECT_TIMEOUT,
        )
        self._all.append(protocol)
        self._make_idle(protocol)

    def reset_stats(self) -> None:
        self.stats = Stats()
        for connection in self._all:
            connection.stats = self.stats

    # -- dispatch ----------------------------------------------------------
    def submit(self, scheduled: float) -> None:
        """Open loop: send a request due at ``scheduled`` now, or queue it."""
        while self.idle:
            connection = self.idle.popleft()
            if connection.usable:
                self.in_flight += 1
                self._settled.clear()
                connection.send(self.request, scheduled)
                return
        self.stats.queued += 1
        self.waiting.append(scheduled)
        self._settled.clear()

    def _done(self, connection: Connection, ok: bool) -> None:
        self.in_flight -= 1
        self._make_idle(connection)
        self._check_settled()

    def _lost(self, connection: Connection) -> None:
        """An idle connection closed under us: forget it and open another."""
        if connection in self.idle:
            self.idle.remove(connection)
        self._forget(connection)

    def _forget(self, connection: Connection) -> None:
        if connection in self._all:
            self._all.remove(connection)
            self._replace()

    def _make_idle(self, connection: Connection) -> None:
        if not connection.usable:
            self._forget(connection)
            return
        if self.waiting:
            self.in_flight += 1
            connection.send(self.request, self.waiting.popleft())
        elif self.closed_loop_until and clock() < self.closed_loop_until:
            self.in_flight += 1
            connection.send(self.request, clock())
        else:
            self.idle.append(connection)

    def _replace(self) -> None:
        if self.reconnects >= 100 * self.size:
            return
        self.reconnects += 1
        task = asyncio.get_running_loop().create_task(self._reconnect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self) -> None:
        await asyncio.sleep(0.01)
        try:
            await self._connect()
        except (OSError, TimeoutError) as exc:
            self.stats.error(f"reconnect failed: {exc!r}")
            self._replace()

    def _check_settled(self) -> None:
        if self.in_flight == 0 and not self.waiting:
            self._settled.set()

    async def settle(self, timeout: float) -> int:
        """Wait for requests in flight and queued; returns how many never finished."""
        self._check_settled()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
            return 0
        except TimeoutError:
            lost = self.in_flight + len(self.waiting)
            self.waiting.clear()
            return lost

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for connection in self._all:
            if connection.transport is not None:
                connection.transport.close()


async def open_loop(pool: Pool, rate: float, duration: float) -> float:
    """Sends ``rate * duration`` requests on schedule; returns the window's length.

    The event loop's timers only have millisecond resolution (and uvloop spins on
    shorter ones), so a helper thread sleeps to each due time with ``time.sleep``
    and wakes the loop, which then sends every request that is due.
    """
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * duration))
    interval = 1.0 / rate
    t0 = clock() + 0.005
    sent = 0
    finished = loop.create_future()
    stop = threading.Event()

    def dispatch() -> None:
        nonlocal sent
        now = clock()
        due = min(total, math.floor((now - t0) / interval) + 1) if now >= t0 else 0
        while sent < due:
            pool.submit(t0 + sent * interval)
            sent += 1
        if sent >= total and not finished.done():
            finished.set_result(None)

    def ticker() -> None:
        for i in range(total):
            if stop.is_set():
                return
            wait = t0 + i * interval - clock()
            if wait > 0:
                time.sleep(wait)
            try:
                loop.call_soon_threadsafe(dispatch)
            except RuntimeError:  # the loop has closed
                return

    thread = threading.Thread(target=ticker, name="loadgen-ticker", daemon=True)
    thread.start()
    try:
        await asyncio.wait_for(finished, duration + DRAIN_TIMEOUT)
    except TimeoutError:
        pool.stats.error("the schedule fell behind by more than the drain timeout")
    finally:
        stop.set()
        await loop.run_in_executor(None, thread.join, 5.0)
    lost = await pool.settle(DRAIN_TIMEOUT)
    for _ in range(lost):
        pool.stats.error("no answer within the drain timeout")
    return clock() - t0


async def closed_loop(pool: Pool, duration: float) -> float:
    start = clock()
    pool.closed_loop_until = start + duration
    while pool.idle:
        connection = pool.idle.popleft()
        if connection.usable:
            pool.in_flight += 1
            connection.send(pool.request, clock())
    await asyncio.sleep(duration)
    pool.closed_loop_until = 0.0
    lost = await pool.settle(DRAIN_TIMEOUT)
    for _ in range(lost):
        pool.stats.error("no answer within the drain timeout")
    return clock() - start


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run(args: argparse.Namespace) -> dict[str, object]:
    host, port, request = build_request(args.url, args.body_size)
    pool = Pool(host, port, request, args.connections)
    await pool.open()
    try:
        if args.warmup > 0:
            if args.warmup_rate > 0:
                await open_loop(pool, args.warmup_rate, args.warmup)
            else:
                await closed_loop(pool, args.warmup)
        pool.reset_stats()
        if args.handshake:
            print("WARMED", flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.readline)
        cpu_before = _cpu_seconds()
        if args.rate > 0:
            elapsed = await open_loop(pool, args.rate, args.duration)
        else:
            elapsed = await closed_loop(pool, args.duration)
        cpu_after = _cpu_seconds()
        if args.handshake:
            print("DONE", flush=True)
    finally:
        await pool.close()
    stats = pool.stats
    return {
        "url": args.url,
        "mode": "open" if args.rate > 0 else "closed",
        "rate": args.rate,
        "connections": args.connections,
        "elapsed": elapsed,
        "completed": len(stats.latencies),
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "queued": stats.queued,
        "reconnects": pool.reconnects,
        "loadgen_cpu_s": cpu_after - cpu_before,
        "latencies": stats.latencies,
        "service": stats.service,
        "lag": stats.lag,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="http://host:port/path to POST to")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (0: closed loop)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="warm-up seconds")
    parser.add_argument("--warmup-rate", type=float, default=100.0, help="warm-up requests/s")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--body-size", type=int, default=1024, help="request body bytes")
    parser.add_argument("--handshake", action="store_true", help="WARMED / stdin / DONE")
    parser.add_argument(
        "--result-file", help="write the result JSON here instead of as stdout's last line"
    )
    args = parser.parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.rate < 0:
        parser.error("--connections must be >= 1, --duration > 0 and --rate >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = uvloop.run(run(args))
    except (OSError, ValueError) as exc:
        _report({"fatal": str(exc)}, args.result_file)
        return 1
    _report(result, args.result_file)
    return 0


def _report(data: object, result_file: str | None) -> None:
    text = json.dumps(data)
    if result_file is not None:
        # The result is hundreds of KiB: a file, not a pipe, where lines of that size
        # arrived cut at the pipe's capacity even with stdout set blocking.
        Path(result_file).write_text(text)
        print("RESULT", flush=True)
        return
    os.set_blocking(sys.stdout.fileno(), True)
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
