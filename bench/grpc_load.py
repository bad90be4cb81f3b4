"""A fixed-rate gRPC load client on grpcio (grpc.aio): unary calls over one channel.

Request *i* is due at ``t0 + i / RATE`` and is sent then, whatever is still in flight
(HTTP/2 multiplexes them on the one connection); latency runs from the *scheduled*
time, so a client or proxy that falls behind shows as latency, not as fewer calls.

Two kinds of call:

* ``--mode raw``: ``--method`` (any service/method path) with ``--body-size`` raw
  bytes; with ``--app-id`` the call carries metadata ``dapr-app-id`` (gRPC proxying);
* ``--mode invoke``: ``dapr.proto.runtime.v1.Dapr/InvokeService`` to ``--app-id``,
  method ``bench``, POST, with ``--body-size`` bytes of data.

The handshake is ``bench.loadgen``'s: one probe call (on failure one line ``FAILED
<code> <details>`` and exit 1), a warm-up, ``WARMED``, a line on stdin, the measured
window, ``DONE``, the JSON result written to ``--result-file``, ``RESULT``. So the
parent samples other processes' CPU around exactly the measured calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

clock = time.perf_counter
DRAIN_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
INVOKE_SERVICE = "/dapr.proto.runtime.v1.Dapr/InvokeService"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, from the scheduled time
    lag: list[float] = field(default_factory=list)  # seconds, scheduled time to sending
    errors: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def error(self, code: str, what: str) -> None:
        self.errors += 1
        self.codes[code] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{code}: {what}")


def invoke_request(app_id: str, body: bytes) -> bytes:
    """An InvokeServiceRequest as an SDK sends it: POST, application/octet-stream."""
    from proxy.protos import common_pb2, runtime_pb2

    request = runtime_pb2.InvokeServiceRequest(id=app_id)
    request.message.method = "bench"
    request.message.content_type = "application/octet-stream"
    request.message.http_extension.verb = common_pb2.HTTPExtension.Verb.POST
    request.message.data.value = body
    return bytes(request.SerializeToString())


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        body = b"x" * args.body_size
        self.channel = grpc.aio.insecure_channel(args.target)
        if args.mode == "invoke":
            self.method, self.request = INVOKE_SERVICE, invoke_request(args.app_id, body)
            self.metadata: tuple[tuple[str, str], ...] = ()
        else:
            self.method, self.request = args.method, body
            self.metadata = (("dapr-app-id", args.app_id),) if args.app_id else ()
        self.call = self.channel.unary_unary(self.method)
        self.expected = b""  # the probe's answer: every later answer must be the same

    async def probe(self) -> str | None:
        """One call; None if it worked, else ``CODE details``."""
        try:
            answer = await self.call(self.request, metadata=self.metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name} {exc.details()}"
        self.expected = bytes(answer)
        return None

    async def one(self, due: float, stats: Stats) -> None:
        stats.lag.append(clock() - due)
        try:
            answer = await self.call(self.request, metadata=self.metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            stats.error(exc.code().name, str(exc.details()))
            return
        if answer != self.expected:
            stats.error("WRONG_ANSWER", f"{len(answer)} bytes")
            return
        stats.latencies.append(clock() - due)

    async def fixed_rate(self, rate: float, duration: float, stats: Stats) -> float:
        """Calls at ``rate`` for ``duration`` s, then waits for the last answers;
        returns the elapsed time of the whole window."""
        pending: set[asyncio.Task[None]] = set()
        start = clock()
        count = int(rate * duration)
        for i in range(count):
            due = start + i / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(due, stats))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(set(pending), timeout=DRAIN_TIMEOUT)
        for task in list(pending):
            task.cancel()
            stats.error("DRAIN", "no answer before the drain timeout")
        return clock() - start


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run(args: argparse.Namespace) -> int:
    client = Client(args)
    try:
        failed = await client.probe()
        if failed is not None:
            print(f"FAILED {failed}", flush=True)
            return 1
        if args.warmup > 0:
            await client.fixed_rate(args.rate, args.warmup, Stats())
        print("WARMED", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stats = Stats()
        cpu = _cpu_seconds()
        elapsed = await client.fixed_rate(args.rate, args.duration, stats)
        cpu = _cpu_seconds() - cpu
        print("DONE", flush=True)
        result = {
            "completed": len(stats.latencies),
            "errors": stats.errors,
            "elapsed": elapsed,
            "latencies": stats.latencies,
            "lag": stats.lag,
            "status": dict(stats.codes),
            "error_samples": stats.samples,
            "client_cpu_s": cpu,
        }
        Path(args.result_file).write_text(json.dumps(result))
        print("RESULT", flush=True)
        return 0
    finally:
        await client.channel.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_load")
    add = parser.add_argument
    add("--target", required=True, help="host:port (h2c)")
    add("--mode", choices=("raw", "invoke"), default="raw")
    add("--method", default="/bench.Echo/Unary", help="raw mode: the full method path")
    add("--app-id", default="", help="raw: dapr-app-id metadata; invoke: the target app ID")
    add("--body-size", type=int, default=1024)
    add("--rate", type=float, default=500.0, help="calls/s")
    add("--duration", type=float, default=10.0)
    add("--warmup", type=float, default=2.0)
    add("--result-file", required=True)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be > 0")
    if args.mode == "invoke" and not args.app_id:
        parser.error("--mode invoke needs --app-id")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
