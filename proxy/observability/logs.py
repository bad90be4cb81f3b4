"""Log output in daprd's two formats, so pipelines that parse daprd's logs keep working.

daprd logs through logrus with fields ``app_id``, ``instance`` (the host name),
``scope``, ``type`` (``log``) and ``ver`` beside ``time``, ``level`` and ``msg``:

- text (the default), logrus's ``TextFormatter``: ``time``, ``level``, ``msg`` first,
  then the other fields sorted by name; a value is quoted, Go-style, only when it has
  a character other than letters, digits and ``-._/@^+``;
- JSON lines (``--log-as-json``), logrus's ``JSONFormatter``.

Levels are logrus's names (``info``, ``warning``, ...); times are RFC 3339 with the
fraction trimmed, as Go's ``RFC3339Nano`` writes them, always in UTC. One record is
always one line: a traceback goes into ``msg``, escaped.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from datetime import UTC, datetime

from proxy.core.version import RUNTIME_VERSION

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR, "fatal": logging.CRITICAL}  # fmt: skip
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "fatal"}  # fmt: skip

# logrus leaves a value bare when every character is one of these.
_BARE = re.compile(r"[A-Za-z0-9\-._/@^+]*")
# Go's strconv.Quote escapes; other ASCII controls become \xNN, other unprintables \uNNNN.
_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}  # fmt: skip


def go_quote(value: str) -> str:
    """``value`` as Go's ``%q`` writes it: in double quotes, control characters escaped."""
    out = ['"']
    for char in value:
        escaped = _GO_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def text_value(value: str) -> str:
    """A field value as logrus's text formatter writes it: bare if it can be, else quoted."""
    return value if _BARE.fullmatch(value) else go_quote(value)


def rfc3339(timestamp: float) -> str:
    """``timestamp`` in UTC as Go's ``RFC3339Nano`` writes it (trailing zeros trimmed)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


class _DaprFields(logging.Formatter):
    """The fields of one daprd log entry, in logrus's text order."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self._fixed = {
            "app_id": app_id,
            "instance": socket.gethostname(),
            "type": "log",
            "ver": RUNTIME_VERSION,
        }

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        rest = {**self._fixed, "scope": record.name}
        return {
            "time": rfc3339(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "msg": message,
            **{key: rest[key] for key in sorted(rest)},
        }


class TextFormatter(_DaprFields):
    """daprd's text lines: ``time="..." level=info msg="..." app_id=... instance=...``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={text_value(v)}" for k, v in self.fields(record).items())


class JsonFormatter(_DaprFields):
    """One JSON object a line: time, level, msg, app_id, instance, scope, type, ver."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), ensure_ascii=False)


def configure_logging(level: str, app_id: str, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(app_id) if as_json else TextFormatter(app_id))
    logging.basicConfig(level=LEVELS[level], handlers=[handler], force=True)
