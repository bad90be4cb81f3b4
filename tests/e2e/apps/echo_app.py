"""A real HTTP app for end-to-end tests (stdlib only, one process).

Usage: python echo_app.py PORT LOGFILE

Every request it receives is appended to LOGFILE as one JSON line (method,
path, headers, body length and sha256), so a test can count exactly what
reached the app. Routes:
  /status/<code>      answer with that status and a small JSON body
  /download/<n>       stream n bytes (chunks of 64 KiB) with Content-Length
  /slow/<ms>          answer after a delay
  /quit               answer, then exit with status 0
  anything else       echo: JSON of what was received, plus header x-echo: yes
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this each keep-alive
    # response waits on a delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> dict[str, object]:
        digest = hashlib.sha256()
        if "chunked" in (self.headers.get("transfer-encoding") or ""):
            length = remaining = 0
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data = self.rfile.read(size)
                self.rfile.readline()
                digest.update(data)
                length += len(data)
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
        else:
            length = int(self.headers.get("content-length") or 0)
            remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_length": length - remaining,
            "body_sha256": digest.hexdigest(),
        }
        with LOCK, open(self.server.log_path, "a") as log:  # type: ignore[attr-defined]
            log.write(json.dumps(entry) + "\n")
        return entry

    def _handle(self) -> None:
        entry = self._record()
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1:
            self._send(int(parts[1]), json.dumps({"status": int(parts[1])}).encode())
        elif parts[0] == "download" and len(parts) > 1:
            size = int(parts[1])
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(size))
            self.end_headers()
            block = b"x" * (1 << 16)
            sent = 0
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        elif parts[0] == "quit":
            self._send(200, b'{"quit":true}')
            threading.Thread(target=self.server.shutdown, daemon=True).start()
        elif parts[0] == "slow" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000)
            self._send(200, b'{"slow":true}')
        elif parts[0] == "concurrent" and len(parts) > 1:
            # Counts requests inside this route at once (kept on the server object);
            # answers how many were in flight on arrival and the peak so far.
            server = self.server
            with LOCK:
                in_flight = getattr(server, "concurrent_now", 0) + 1
                server.concurrent_now = in_flight  # type: ignore[attr-defined]
                peak = max(getattr(server, "concurrent_peak", 0), in_flight)
                server.concurrent_peak = peak  # type: ignore[attr-defined]
            try:
                time.sleep(int(parts[1]) / 1000)
            finally:
                with LOCK:
                    server.concurrent_now -= 1  # type: ignore[attr-defined]
            self._send(200, json.dumps({"in_flight": in_flight, "peak": peak}).encode())
        elif parts[0] == "fail" and len(parts) > 3:
            # /fail/<count>/<status>/<key>: the first <count> requests for <key> answer
            # <status> with {"failed": n}; later ones answer 200 with {"ok": n}
            # (n counts this key's requests from 1; state kept on the server object).
            count, status, key = int(parts[1]), int(parts[2]), parts[3]
            server = self.server
            with LOCK:
                seen = getattr(server, "fail_counts", None)
                if seen is None:
                    seen = server.fail_counts = {}  # type: ignore[attr-defined]
                seen[key] = number = seen.get(key, 0) + 1
            if number <= count:
                self._send(status, json.dumps({"failed": number}).encode())
            else:
                self._send(200, json.dumps({"ok": number}).encode())
        else:
            self._send(200, json.dumps(entry).encode(), extra=[("x-echo", "yes")])

    def _send(self, status: int, body: bytes, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        if status in (204, 304):
            self.end_headers()  # no body, so no framing headers either
            return
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_TRACE = _handle


def main() -> None:
    port, log_path = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.log_path = log_path  # type: ignore[attr-defined]
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
