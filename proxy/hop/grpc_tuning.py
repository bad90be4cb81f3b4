"""gRPC core settings of the sidecar's grpcio client channels, chosen by
measurement or taken from daprd (the internal server is proxy.grpcwire's).

grpcio 1.85 routes every operation through its EventEngine threads and then
the asyncio poller; turning those experiments off uses the older I/O manager,
which on this workload (one message each way per call on a long-lived stream)
cut gRPC's CPU per call by about a third on both sides
(``bench/invoke_bench.py``). An operator's own ``GRPC_EXPERIMENTS`` wins.
``apply`` must run before ``grpc`` is imported: the core reads it once at start,
so this module does not import grpc.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

EXPERIMENTS = "-event_engine_client,-event_engine_listener,-event_engine_callback_cq"

Options = list[tuple[str, int | str]]

# Bandwidth-delay probing off (so since the first benchmark): it adds pings to busy streams.
_NO_BDP_PROBE: Options = [("grpc.http2.bdp_probe", 0)]


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    environ.setdefault("GRPC_EXPERIMENTS", EXPERIMENTS)


def _message_limits(max_message_size: int) -> Options:
    return [
        ("grpc.max_send_message_length", max_message_size),
        ("grpc.max_receive_message_length", max_message_size),
    ]


def channel_options(
    max_message_size: int,
    *,
    connect_timeout: float = 2.0,
    keepalive_time: float = 10.0,
    keepalive_timeout: float = 5.0,
) -> Options:
    """Options of a channel to another sidecar (seconds in, milliseconds to gRPC).

    A silent peer is found by pings: one every ``keepalive_time`` (also with no call
    open, as daprd's client does), and the connection with its calls in flight fails
    when one is unanswered for ``keepalive_timeout``. gRPC core's least connect timeout
    (``min_reconnect_backoff_ms``, 20 s by default) bounds a connection attempt to a
    host that does not answer, so calls to it fail after ``connect_timeout`` instead.
    """
    connect_ms = max(1, round(connect_timeout * 1000))
    return [
        *_message_limits(max_message_size),
        ("grpc.keepalive_time_ms", round(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", round(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Keep pinging an idle connection (core stops after 2 pings without data).
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.min_reconnect_backoff_ms", connect_ms),
        ("grpc.initial_reconnect_backoff_ms", min(1000, connect_ms)),
        *_NO_BDP_PROBE,
    ]
