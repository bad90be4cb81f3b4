from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.harness import Cluster

if TYPE_CHECKING:
    import grpc


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def channels() -> Iterator[list[grpc.Channel]]:
    """gRPC channels a test opens to sidecars; closed when it ends."""
    opened: list[grpc.Channel] = []
    try:
        yield opened
    finally:
        for channel in opened:
            channel.close()
