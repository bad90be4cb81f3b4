"""Making HTTP calls from inside a network namespace: the test process lives in the
host's namespace and cannot reach a machine's loopback, so a small Python process runs
inside the machine and makes the calls for it, one JSON request and answer per line."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.e2e.netns import Machine

CALL_TIMEOUT = 30.0
# An agent answer never takes longer than its calls' own timeouts; this only stops a
# wedged agent from hanging the test.
AGENT_SLACK = 30.0

# Runs inside a machine: one JSON request per stdin line, one JSON answer per line.
#   {"op": "connect", "port": P}                      -> {"ok": bool}
#   {"op": "call", "port": P, "method": M, "path": X,
#    "count": N, "concurrency": C, "timeout": T,
#    "headers": {...}, "body": str|null}              -> {"results": [{"status", "body"}]}
# A call that gets no HTTP response has status 0 and the exception in "body".
AGENT = r"""
import http.client, json, socket, sys
from concurrent.futures import ThreadPoolExecutor

def one(req):
    conn = http.client.HTTPConnection("127.0.0.1", req["port"], timeout=req.get("timeout", 30))
    try:
        body = req.get("body")
        conn.request(req.get("method", "GET"), req["path"],
                     body=body.encode() if body is not None else None,
                     headers=req.get("headers") or {})
        response = conn.getresponse()
        data = response.read()
        return {"status": response.status, "body": data.decode("utf-8", "replace")}
    except OSError as exc:
        return {"status": 0, "body": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()

def connect(req):
    try:
        with socket.create_connection(("127.0.0.1", req["port"]), timeout=1.0):
            return {"ok": True}
    except OSError:
        return {"ok": False}

for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "connect":
        answer = connect(req)
    else:
        count, workers = req.get("count", 1), req.get("concurrency", 1)
        if workers <= 1:
            results = [one(req) for _ in range(count)]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(lambda _: one(req), range(count)))
        answer = {"results": results}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


@dataclass(frozen=True)
class Result:
    status: int  # 0: no HTTP response at all
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class Agent:
    """Makes HTTP calls from inside one machine, through a long-lived helper process."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.process = machine.popen(
            [sys.executable, "-c", AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._buffer = b""

    def ask(self, request: Mapping[str, object], timeout: float) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(request).encode() + b"\n")
        stdin.flush()
        deadline = time.monotonic() + timeout + AGENT_SLACK
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise RuntimeError(f"agent on {self.machine.name} gave no answer to {request}")
            ready, _, _ = select.select([stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(stdout.fileno(), 1 << 16)
                if not chunk:
                    raise RuntimeError(f"agent on {self.machine.name} exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def connects(self, port: int) -> bool:
        return bool(self.ask({"op": "connect", "port": port}, 1.0)["ok"])

    def calls(
        self,
        port: int,
        path: str,
        *,
        count: int = 1,
        method: str = "GET",
        concurrency: int = 1,
        timeout: float = CALL_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> list[Result]:
        request = {
            "op": "call",
            "port": port,
            "path": path,
            "method": method,
            "count": count,
            "concurrency": concurrency,
            "timeout": timeout,
            "headers": dict(headers or {}),
            "body": body,
        }
        rounds = -(-count // max(concurrency, 1))  # calls one worker makes at most
        answer = self.ask(request, timeout * rounds)
        return [Result(r["status"], r["body"]) for r in answer["results"]]
