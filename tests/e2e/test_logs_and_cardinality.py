"""Logs as daprd writes them (logrus text lines, or JSON lines) with Dapr's fields,
and the metric series cap seen
through a real sidecar: thousands of distinct request paths never become
thousands of series, whatever ``spec.metric.http`` says."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.e2e.harness import Cluster, Sidecar, free_port, request

JSON_LOG_KEYS = {"time", "level", "msg", "scope", "app_id", "instance", "type", "ver"}
# logrus's names, which daprd's JSON lines carry.
DAPR_LEVELS = {"debug", "info", "warning", "error", "fatal", "panic"}
# One logrus text line: time, level, msg, then the other fields sorted by name; a value
# is bare or a Go-quoted string.
_VALUE = r'(?:[A-Za-z0-9\-._/@^+]*|"(?:[^"\\]|\\.)*")'
TEXT_LINE = re.compile(
    rf'time="(?P<time>[^"]+)" level=(?P<level>[a-z]+) msg=(?P<msg>{_VALUE})'
    rf" app_id=(?P<app_id>{_VALUE}) instance=(?P<instance>{_VALUE})"
    rf" scope=(?P<scope>{_VALUE}) type=log ver=(?P<ver>{_VALUE})"
)
CALLS = 1500
CAP = 1000
TEMPLATE = "/v1.0/invoke/orders/method/item/{id}"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name`` in the sidecar's /metrics, as (labels, value)."""
    text = request(port, "GET", "/metrics").body.decode()
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        found.append((labels, float(match.group(3))))
    return found


def json_lines(sidecar: Sidecar) -> list[dict[str, object]]:
    entries = []
    for line in sidecar.log().splitlines():
        entry = json.loads(line)  # every line, not only most of them
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def call_many(port: int, paths: Iterable[str]) -> int:
    """GET every path through one keep-alive connection; returns how many answered 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = 0
    try:
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, (path, response.status)
            ok += 1
    finally:
        connection.close()
    return ok


def metric_config(path: Path, http_section: str) -> Path:
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\n"
        "kind: Configuration\n"
        "metadata: {name: metrics}\n"
        "spec:\n"
        "  metric:\n"
        f"    http: {http_section}\n"
    )
    return path


class _QuickHandler(BaseHTTPRequestHandler):
    """Answers 200 at once. Nagle is off so the head and the body leave together:
    a keep-alive client would otherwise wait out a delayed ACK on every call."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def quick_app() -> Iterator[int]:
    """An in-process HTTP app on loopback, stopped when the block ends; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _QuickHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def start_pair(
    cluster: Cluster, app_port: int, checkout_extra: tuple[str, ...] = ()
) -> tuple[Sidecar, int, Sidecar, int]:
    """orders (in front of the app) and checkout, each with a metrics port the test knows."""
    cluster.certs_init()
    orders_metrics, checkout_metrics = free_port(), free_port()
    orders = cluster.sidecar(
        "orders", extra=("--metrics-port", str(orders_metrics), "--app-port", str(app_port))
    )
    checkout = cluster.sidecar(
        "checkout", extra=("--metrics-port", str(checkout_metrics), *checkout_extra)
    )
    return orders, orders_metrics, checkout, checkout_metrics


def item_paths() -> list[str]:
    return [f"/v1.0/invoke/orders/method/item/{n}" for n in range(CALLS)]


def served_ok(port: int, attempts: int = 50) -> list[tuple[dict[str, str], float]]:
    """checkout's status="200" request_count series, once they add up to every call.

    The count is recorded as the response goes out, so the last call may land a
    moment after the client read it: poll, bounded.
    """
    found: list[tuple[dict[str, str], float]] = []
    for _ in range(attempts):
        found = [
            (labels, value)
            for labels, value in samples(port, "dapr_http_server_request_count")
            if labels.get("status") == "200"
        ]
        if sum(value for _, value in found) >= CALLS:
            break
        time.sleep(0.1)
    return found


def test_log_as_json_lines_carry_dapr_fields(cluster: Cluster) -> None:
    sidecar = cluster.sidecar("jsonlogs", mtls=False, extra=("--log-as-json",))
    # A call to an unknown app is something to log about, at least at debug.
    request(sidecar.http_port, "GET", "/v1.0/invoke/nobody/method/x")
    assert cluster.stop(sidecar.process) == 0
    entries = json_lines(sidecar)
    assert entries, "the sidecar logged nothing"
    for entry in entries:
        assert set(entry) == JSON_LOG_KEYS, entry
        assert entry["app_id"] == "jsonlogs"
        assert entry["level"] in DAPR_LEVELS, entry
        assert entry["type"] == "log"
        assert entry["instance"] == socket.gethostname()
        assert isinstance(entry["ver"], str) and entry["ver"]
        assert isinstance(entry["msg"], str)
        assert isinstance(entry["scope"], str) and entry["scope"]
        stamp = datetime.fromisoformat(str(entry["time"]))
        assert stamp.tzinfo is not None
    assert any(e["level"] == "info" for e in entries)


def test_text_lines_are_daprds_logrus_lines(cluster: Cluster) -> None:
    sidecar = cluster.sidecar("textlogs", mtls=False)
    request(sidecar.http_port, "GET", "/v1.0/invoke/nobody/method/x")
    assert cluster.stop(sidecar.process) == 0
    lines = sidecar.log().splitlines()
    assert lines, "the sidecar logged nothing"
    levels = []
    for line in lines:
        match = TEXT_LINE.fullmatch(line)  # every line, not only most of them
        assert match is not None, line
        assert match["app_id"] == "textlogs"
        assert match["instance"] == socket.gethostname()
        assert match["ver"]
        assert datetime.fromisoformat(match["time"]).tzinfo is not None
        levels.append(match["level"])
    assert set(levels) <= DAPR_LEVELS, levels
    assert "info" in levels


def test_distinct_paths_are_capped_with_raw_paths(cluster: Cluster) -> None:
    with quick_app() as app_port:
        orders, orders_metrics, checkout, checkout_metrics = start_pair(
            cluster, app_port, ("--log-as-json",)
        )
        assert call_many(checkout.http_port, item_paths()) == CALLS

    ok = served_ok(checkout_metrics)
    every = samples(checkout_metrics, "dapr_http_server_request_count")
    assert len(every) <= CAP + 1, len(every)
    overflow = [(labels, value) for labels, value in every if labels["path"] == "_overflow"]
    assert len(overflow) == 1, overflow
    assert overflow[0][0]["status"] == "200"
    # The health checks the harness made came first and kept their own series.
    health = [value for labels, value in every if labels["path"] == "/v1.0/healthz"]
    assert health, every
    assert sum(value for _, value in ok) == CALLS
    assert sum(value for _, value in every) == CALLS + sum(health)
    raw = {labels["path"] for labels, _ in ok} - {"_overflow"}
    assert raw <= set(item_paths())
    assert len(raw) == CAP - len(health)  # the cap less the health-check series

    # The callee side is capped the same way (its app calls are labelled by path too).
    client = samples(orders_metrics, "dapr_http_client_completed_count")
    assert len(client) <= CAP + 1, len(client)
    assert any(labels["path"] == "_overflow" for labels, _ in client)

    # One warning per capped metric, however many values overflowed.
    warnings = [
        e
        for e in json_lines(checkout)
        if e["scope"] == "tether.metrics" and "dapr_http_server_request_count" in str(e["msg"])
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "warning"
    assert orders.process.poll() is None


def test_increased_cardinality_off_drops_the_path(cluster: Cluster) -> None:
    config = metric_config(cluster.root / "metrics.yaml", "{increasedCardinality: false}")
    with quick_app() as app_port:
        _, _, checkout, checkout_metrics = start_pair(cluster, app_port, ("--config", str(config)))
        assert call_many(checkout.http_port, item_paths()) == CALLS
    ok = served_ok(checkout_metrics)
    every = samples(checkout_metrics, "dapr_http_server_request_count")
    assert {labels["path"] for labels, _ in every} == {""}
    assert len(ok) == 1, ok
    assert ok[0][1] == CALLS


def test_path_matching_labels_with_the_template(cluster: Cluster) -> None:
    config = metric_config(cluster.root / "metrics.yaml", f'{{pathMatching: ["{TEMPLATE}"]}}')
    with quick_app() as app_port:
        _, _, checkout, checkout_metrics = start_pair(cluster, app_port, ("--config", str(config)))
        assert call_many(checkout.http_port, item_paths()) == CALLS
    ok = served_ok(checkout_metrics)
    assert [labels["path"] for labels, _ in ok] == [TEMPLATE], ok
    assert ok[0][1] == CALLS
    every = samples(checkout_metrics, "dapr_http_server_request_count")
    invoke_paths = {labels["path"] for labels, _ in every if "/invoke/" in labels["path"]}
    assert invoke_paths == {TEMPLATE}, invoke_paths
