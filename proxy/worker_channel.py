"""What the supervisor and a worker of ``--workers N`` say to each other, over a
Unix socket pair the worker inherits.

Down: once, the worker's settings (pickled: both ends are this same code, and the
socket is private to the two processes). Up: one JSON object a line, ``ready``
(with the worker's private metrics port), ``error`` (why it could not start) or
``shutdown`` (``POST /v1.0/shutdown`` arrived: stop every worker). The socket's end
is also a signal: the worker sees EOF when the supervisor is gone, and stops.
"""

from __future__ import annotations

import json
import pickle
import socket
import struct

from proxy.config.settings import SidecarSettings

_LENGTH = struct.Struct("!I")

READY = "ready"
ERROR = "error"
SHUTDOWN = "shutdown"


def encode_settings(settings: SidecarSettings) -> bytes:
    data = pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise EOFError("the supervisor closed the channel")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive_settings(sock: socket.socket) -> SidecarSettings:
    """Blocking: the worker reads this before it starts anything."""
    (size,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size))
    settings = pickle.loads(_read_exactly(sock, size))
    if not isinstance(settings, SidecarSettings):
        raise TypeError(f"expected SidecarSettings, got {type(settings).__name__}")
    return settings


def message(kind: str, **fields: object) -> bytes:
    return json.dumps({"kind": kind, **fields}).encode() + b"\n"


def parse_message(line: bytes) -> dict[str, object]:
    """One line from a worker; raises ValueError if it is not one of ours."""
    decoded = json.loads(line)
    if not isinstance(decoded, dict) or decoded.get("kind") not in (READY, ERROR, SHUTDOWN):
        raise ValueError(f"not a worker message: {line!r}")
    return decoded
