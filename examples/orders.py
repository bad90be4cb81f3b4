"""The orders service of the demo: a plain HTTP app that knows nothing about
tether. It answers POST /neworder and GET /orders/<id>."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS: dict[str, dict[str, object]] = {}


class Orders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        order = json.loads(self.rfile.read(length) or b"{}")
        order_id = str(len(ORDERS) + 1)
        ORDERS[order_id] = order
        caller = self.headers.get("dapr-caller-app-id", "?")
        print(f"orders: order {order_id} from {caller}: {order}", flush=True)
        self._reply(201, {"id": order_id, **order})

    def do_GET(self) -> None:
        order_id = self.path.rsplit("/", 1)[-1]
        if order_id in ORDERS:
            self._reply(200, {"id": order_id, **ORDERS[order_id]})
        else:
            self._reply(404, {"error": f"no order {order_id}"})


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", "8081"))
    ThreadingHTTPServer(("127.0.0.1", port), Orders).serve_forever()
