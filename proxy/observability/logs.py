"""Log output in Dapr's two formats: ``key=value`` text lines, or JSON lines
(``--log-as-json``) with Dapr's fields, so pipelines that parse daprd's logs
keep working."""

from __future__ import annotations

import json
import logging
import socket
import sys
from datetime import UTC, datetime

from proxy.core.version import RUNTIME_VERSION

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR, "fatal": logging.CRITICAL}  # fmt: skip
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "fatal"}  # fmt: skip


class TextFormatter(logging.Formatter):
    """Dapr's text lines, with the message quoted safely."""

    def __init__(self, app_id: str) -> None:
        super().__init__(
            'time="%(asctime)s" level=%(levelname)s msg="%(message)s" '
            f"app_id={app_id} scope=%(name)s",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = (
            record.message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        )
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, msg, scope, app_id, instance, type, ver."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self._fixed = {
            "app_id": app_id,
            "instance": socket.gethostname(),
            "type": "log",
            "ver": RUNTIME_VERSION,
        }

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "msg": message,
            "scope": record.name,
            **self._fixed,
        }
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, app_id: str, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(app_id) if as_json else TextFormatter(app_id))
    logging.basicConfig(level=LEVELS[level], handlers=[handler], force=True)
