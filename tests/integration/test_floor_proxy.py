"""The benchmark's Python floor pair (``bench.floor_proxy``): frames split right, and
the real pair, started as the benchmark starts it, carries calls to the real app."""

from __future__ import annotations

import asyncio
import http.client
import sys
import tempfile
from pathlib import Path
from typing import cast

import pytest

from bench.floor_proxy import (
    HEADER,
    CallerLink,
    EdgeConnection,
    FrameReader,
    http_response,
    start_pair,
)
from bench.procs import Proc, start, stop, wait_listening
from tests.e2e.harness import free_port


def test_frames_split_across_reads_and_several_in_one() -> None:
    reader = FrameReader()
    one = HEADER.pack(3, 7) + b"abc"
    two = HEADER.pack(0, 8)
    stream = one + two
    assert reader.feed(stream[:5]) == []
    assert reader.feed(stream[5:]) == [(7, b"abc"), (8, b"")]


def test_an_oversized_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="frame of"):
        FrameReader().feed(HEADER.pack(1 << 30, 1))


class _Link:
    def __init__(self) -> None:
        self.sent = 0

    def forward(self, edge: EdgeConnection, payload: bytes) -> int:
        self.sent += 1
        return self.sent


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_pipelined_requests_are_answered_in_their_order() -> None:
    edge = EdgeConnection(cast(CallerLink, _Link()))
    transport = _Transport()
    edge.connection_made(cast(asyncio.Transport, transport))
    two = b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n" * 2
    edge.data_received(two)
    edge.answer(2, 200, b"second")  # the later request's answer comes first
    assert transport.written == []
    edge.answer(1, 200, b"first")
    assert transport.written == [http_response(200, b"first") + http_response(200, b"second")]


def test_the_pair_carries_calls_to_the_app_and_back() -> None:
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory() as logs:
        logdir = Path(logs)
        try:
            app_port = free_port()
            app = start("app", [sys.executable, "-m", "bench.fast_app", str(app_port)], {}, logdir)
            procs.append(app)
            assert wait_listening(app_port, app) is None
            ports = (free_port(), free_port())
            assert start_pair(None, ports, app_port, {}, logdir, procs) == ""
            connection = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
            try:
                for size in (0, 1024, 70_000):  # the last spans several reads
                    connection.request("POST", "/bench", body=b"y" * size)
                    answer = connection.getresponse()
                    assert (answer.status, answer.read()) == (200, b"x" * 1024)
            finally:
                connection.close()
        finally:
            for proc in reversed(procs):
                stop(proc)
