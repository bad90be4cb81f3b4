"""``--workers``: the flag, the restart backoff, the supervisor-worker channel and the
port check (loopback sockets only)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from proxy.cli import build_parser, settings_from_args
from proxy.config.settings import MAX_WORKERS, SidecarSettings, WorkerRole, announcement
from proxy.core.errors import UsageError
from proxy.discovery.mdns import MdnsSource
from proxy.discovery.registry import SqliteRegistry
from proxy.discovery.sources import instance_source
from proxy.supervisor import MAX_RESTART_DELAY, describe_exit, restart_delay
from proxy.worker_channel import (
    READY,
    encode_settings,
    message,
    parse_message,
    receive_settings,
)
from proxy.worker_ports import PortTaken, bind_once, claim_ports


def settings_for(*flags: str) -> SidecarSettings:
    args = build_parser().parse_args(["sidecar", "--app-id", "orders", *flags])
    return settings_from_args(args, {}, mtls_default=False)


def test_workers_default_to_one() -> None:
    assert settings_for().workers == 1
    assert settings_for("--workers", "4").workers == 4
    assert settings_for("--workers=2").workers == 2


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", str(MAX_WORKERS + 1), ""])
def test_bad_worker_counts_are_refused(value: str) -> None:
    with pytest.raises(UsageError, match="--workers"):
        settings_for("--workers", value)


def test_run_takes_the_flag_too() -> None:
    args = build_parser().parse_args(["run", "--app-id", "a", "--workers", "3"])
    assert settings_from_args(args, {}, mtls_default=True).workers == 3


def test_restart_delay_doubles_and_is_bounded() -> None:
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == MAX_RESTART_DELAY
    assert restart_delay(10_000) == MAX_RESTART_DELAY


def test_describe_exit() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"


def test_settings_cross_the_channel() -> None:
    settings = SidecarSettings(
        "orders", workers=2, reuse_port=True, worker=WorkerRole(1, "abc", 42)
    )
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(encode_settings(settings))
        assert receive_settings(theirs) == settings
        ours.close()
        with pytest.raises(EOFError):
            receive_settings(theirs)


def test_messages() -> None:
    assert parse_message(message(READY, metrics_port=5)) == {"kind": READY, "metrics_port": 5}
    with pytest.raises(ValueError):
        parse_message(b'{"kind": "other"}\n')
    with pytest.raises(ValueError):
        parse_message(b"not json\n")


def test_workers_are_one_instance_and_worker_zero_announces() -> None:
    lone = announcement(SidecarSettings("orders"), 5000)
    assert (lone.registration_id, lone.announce, lone.pid) == (None, True, None)
    for index in (0, 1):
        here = announcement(SidecarSettings("orders", worker=WorkerRole(index, "rid", 7)), 5000)
        assert (here.registration_id, here.pid, here.internal_port) == ("rid", 7, 5000)
        assert here.announce == (index == 0)


def test_a_listening_port_is_taken() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PortTaken, match=f"cannot listen on HTTP port {port}: "):
            claim_ports(SidecarSettings("orders", http_port=port))
        with pytest.raises(OSError):
            bind_once("127.0.0.1", port)


def test_a_reuse_port_group_is_taken_too() -> None:
    # Another tether's workers: a plain bind must fail where they listen.
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        with pytest.raises(OSError):
            bind_once("127.0.0.1", held.getsockname()[1])


def test_internal_port_zero_is_chosen_and_free_ports_pass() -> None:
    http = bind_once("127.0.0.1", 0)
    claimed = claim_ports(SidecarSettings("orders", http_port=http, internal_grpc_port=0))
    assert claimed.internal_grpc_port > 0
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = SidecarSettings("orders", http_port=http, internal_grpc_port=held.getsockname()[1])
        with pytest.raises(
            PortTaken, match=r"cannot listen on internal gRPC address 127\.0\.0\.1:"
        ):
            claim_ports(taken)


def test_only_worker_zero_announces_on_mdns_under_the_supervisors_pid() -> None:
    for index in (0, 1):
        role = WorkerRole(index, "rid", 4242)
        here = announcement(SidecarSettings("orders", host_ip="198.18.0.1", worker=role), 50002)
        made = instance_source("mdns", here, registry=None, update_interval=5.0, dns=None)
        assert isinstance(made, MdnsSource)
        assert made.instance.startswith(f"{socket.gethostname()}:4242.")
        # No sockets: the multicast half is stubbed; a non-announcing worker stops there.
        made._zeroconf = lambda: object()  # type: ignore[method-assign, assignment, return-value]
        if index == 1:
            asyncio.run(made.start())
            assert made._info is None


def test_workers_share_one_registry_row(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db", clock=time.time)
    try:
        sources = [
            instance_source(
                "sqlite",
                announcement(SidecarSettings("orders", worker=WorkerRole(i, "rid", 1)), 5000),
                registry=registry,
                update_interval=5.0,
                dns=None,
            )
            for i in (0, 1)
        ]

        async def start_both() -> int:
            for made in sources:
                await made.start()
            rows = len(registry.lookup("orders", "default"))
            # Both heartbeat the same row: neither finds it gone and re-registers.
            assert registry.heartbeat("rid")
            for made in sources:
                await made.close()
            return rows

        assert asyncio.run(start_both()) == 1  # one instance, not one per worker
        assert registry.lookup("orders", "default") == []  # closed: deregistered
    finally:
        registry.close()
