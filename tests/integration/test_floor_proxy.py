"""The benchmark's Python floor pair (``bench.floor_proxy``): frames split right, and
the real pair, started as the benchmark starts it, carries calls to the real app."""

from __future__ import annotations

import http.client
import sys
import tempfile
from pathlib import Path

import pytest

from bench.floor_proxy import HEADER, FrameReader, start_pair
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
