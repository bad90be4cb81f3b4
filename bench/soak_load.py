"""The soak's load: ``python -m bench.soak_load --port P --rate R --duration S --out FILE``.

Open loop: call *i* is due at ``t0 + i / R``; it goes out on whichever of
``--connections`` keep-alive connections to the caller sidecar is free (queued
otherwise). Each call is ``POST /v1.0/invoke/<app>/method/soak/<prefix>-<i>`` with
its id in the body too. Every call ends in exactly one record, written as a JSON
line to FILE at the end: its id, when it was written and when its answer was read
(``time.monotonic()``, the same clock as the soak's kill records), its status and
for a failure what was answered (Dapr's ``errorCode``, or what went wrong on the
wire). A call with no answer ``--answer-timeout`` after the load ends is recorded
as such; nothing waits longer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

ANSWER_TIMEOUT = 90.0  # longer than the multiplexed hop's own 60 s bound


@dataclass
class Record:
    id: str
    start: float
    end: float
    status: int  # 0: no HTTP answer
    error: str = ""  # Dapr's errorCode, or what broke on the wire
    detail: str = ""  # Dapr's message, shortened


def dapr_error(body: bytes) -> tuple[str, str]:
    """(errorCode, message) of Dapr's error JSON; the code says what else it was."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:80]!r}", ""
    code = data.get("errorCode") if isinstance(data, dict) else None
    if not code:
        return f"no errorCode: {body[:80]!r}", ""
    return str(code), str(data.get("message", ""))[:160]


class Worker:
    """One keep-alive connection; sends one call at a time."""

    def __init__(self, port: int, path: str, timeout: float) -> None:
        self._port = port
        self._path = path
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def call(self, call_id: str) -> Record:
        body = json.dumps({"id": call_id}).encode()
        request = (
            f"POST {self._path}{call_id} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        start = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(
                        "127.0.0.1", self._port
                    )
                assert self._reader is not None
                start = time.monotonic()
                self._writer.write(request)
                head = await self._reader.readuntil(b"\r\n\r\n")
                status, length = _parse_head(head)
                answer = await self._reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            return Record(call_id, start, time.monotonic(), 0, f"wire: {type(exc).__name__}")
        except TimeoutError:
            self.close()
            return Record(call_id, start, time.monotonic(), 0, "wire: no answer in time")
        end = time.monotonic()
        if status == 200:
            return Record(call_id, start, end, status)
        return Record(call_id, start, end, status, *dapr_error(answer))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, length


async def run(args: argparse.Namespace) -> list[Record]:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    records: list[Record] = []
    path = f"/v1.0/invoke/{args.app_id}/method/soak/"

    async def work() -> None:
        worker = Worker(args.port, path, args.answer_timeout)
        try:
            while (call_id := await queue.get()) is not None:
                records.append(await worker.call(call_id))
        finally:
            worker.close()

    workers = [asyncio.ensure_future(work()) for _ in range(args.connections)]
    total = int(args.rate * args.duration)
    t0 = time.monotonic()
    for i in range(total):
        delay = t0 + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(f"{args.prefix}-{i}")
    for _ in workers:
        queue.put_nowait(None)
    # Bounded: every call has its own timeout, so the workers end; this is a backstop.
    await asyncio.wait(workers, timeout=args.answer_timeout + 30)
    for task in workers:
        task.cancel()
    answered = {r.id for r in records}
    now = time.monotonic()
    for i in range(total):
        call_id = f"{args.prefix}-{i}"
        if call_id not in answered:
            records.append(Record(call_id, now, now, 0, "wire: never sent or answered"))
    return records


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_load")
    parser.add_argument("--port", type=int, required=True, help="the caller sidecar's HTTP port")
    parser.add_argument("--app-id", default="orders")
    parser.add_argument("--rate", type=float, default=500.0, help="calls per second")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--prefix", default="soak", help="ids are PREFIX-0, PREFIX-1, ...")
    parser.add_argument("--answer-timeout", type=float, default=ANSWER_TIMEOUT)
    parser.add_argument("--out", required=True, help="JSON lines, one per call")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    records = asyncio.run(run(args))
    with open(args.out, "w") as out:
        for record in records:
            out.write(json.dumps(asdict(record)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
