"""The port picker the benchmarks and the tests share."""

from __future__ import annotations

import socket

import pytest

from bench import ports


def test_ports_come_from_outside_the_ephemeral_range_and_are_never_repeated() -> None:
    low, high = ports._ephemeral_range()
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    if ports._PORT_STOP - ports._PORT_START >= 1000:
        assert all(not low <= port <= high for port in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it


def test_the_range_is_the_larger_side_outside_ephemeral(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (32768, 60999))
    assert ports._port_range() == (16768, 32768)
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (1024, 40000))
    assert ports._port_range() == (40001, 56001)
