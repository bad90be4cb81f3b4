"""Log lines in daprd's formats (logrus text and JSON), one record per line."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from datetime import UTC, datetime

import pytest

from proxy.core.version import RUNTIME_VERSION
from proxy.observability.logs import JsonFormatter, TextFormatter

HOST = socket.gethostname()
# 2024-01-15T10:00:00.123456Z
WHEN = datetime(2024, 1, 15, 10, 0, 0, 123456, UTC).timestamp()


def record(
    message: str,
    level: int = logging.INFO,
    scope: str = "tether.sidecar",
    created: float = WHEN,
    exc_info: logging._SysExcInfoType | None = None,
) -> logging.LogRecord:
    made = logging.LogRecord(scope, level, __file__, 1, message, None, exc_info)
    made.created = created
    return made


def test_text_line_is_daprds_logrus_line() -> None:
    # logrus: time, level, msg, then the other fields sorted by name; values bare
    # unless they hold something other than letters, digits and -._/@^+.
    assert re.fullmatch(r"[A-Za-z0-9\-._]+", HOST), "a host name needs no quotes"
    line = TextFormatter("orders").format(record("app is healthy"))
    assert line == (
        'time="2024-01-15T10:00:00.123456Z" level=info msg="app is healthy"'
        f" app_id=orders instance={HOST} scope=tether.sidecar type=log ver={RUNTIME_VERSION}"
    )


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warning"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "fatal"),
    ],
)
def test_levels_are_logrus_names(level: int, name: str) -> None:
    text = TextFormatter("orders").format(record("x", level))
    assert f" level={name} " in text
    assert json.loads(JsonFormatter("orders").format(record("x", level)))["level"] == name


def test_bare_and_quoted_values() -> None:
    line = TextFormatter("my app").format(record("started", scope="dapr.runtime"))
    assert ' msg=started app_id="my app" ' in line
    assert " scope=dapr.runtime " in line


def test_time_trims_the_fraction_as_go_does() -> None:
    whole = datetime(2024, 1, 15, 10, 0, 0, 0, UTC).timestamp()
    assert (
        TextFormatter("a")
        .format(record("x", created=whole))
        .startswith('time="2024-01-15T10:00:00Z" ')
    )
    tenth = datetime(2024, 1, 15, 10, 0, 0, 100000, UTC).timestamp()
    assert (
        TextFormatter("a")
        .format(record("x", created=tenth))
        .startswith('time="2024-01-15T10:00:00.1Z" ')
    )


def test_carriage_returns_and_newlines_are_escaped() -> None:
    # A forged second line ("\r\n" or a bare "\r", which a terminal honours) must not appear.
    line = TextFormatter("orders").format(record('a\r\nb\rc\nd "q" \\ \t\x00\x7f\x85'))
    assert "\r" not in line
    assert "\n" not in line
    assert ' msg="a\\r\\nb\\rc\\nd \\"q\\" \\\\ \\t\\x00\\x7f\\u0085" ' in line


def test_a_traceback_stays_on_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    line = TextFormatter("orders").format(record("failed", logging.ERROR, exc_info=info))
    assert "\n" not in line
    assert 'msg="failed\\nTraceback (most recent call last):\\n' in line
    assert "ValueError: boom" in line


def test_json_line_has_the_same_fields() -> None:
    entry = json.loads(JsonFormatter("orders").format(record("app is healthy")))
    assert entry == {
        "time": "2024-01-15T10:00:00.123456Z",
        "level": "info",
        "msg": "app is healthy",
        "app_id": "orders",
        "instance": HOST,
        "scope": "tether.sidecar",
        "type": "log",
        "ver": RUNTIME_VERSION,
    }
