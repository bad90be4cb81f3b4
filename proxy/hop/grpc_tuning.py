"""gRPC core settings the sidecar runs with, chosen by measurement.

grpcio 1.85 routes every operation through its EventEngine threads and then
the asyncio poller; turning those experiments off uses the older I/O manager,
which on this workload (one message each way per call on a long-lived stream)
cut gRPC's CPU per call by about a third on both sides
(``bench/invoke_bench.py``). An operator's own ``GRPC_EXPERIMENTS`` wins.
Must run before ``grpc`` is imported: the core reads it once at start.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

EXPERIMENTS = "-event_engine_client,-event_engine_listener,-event_engine_callback_cq"


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    environ.setdefault("GRPC_EXPERIMENTS", EXPERIMENTS)
