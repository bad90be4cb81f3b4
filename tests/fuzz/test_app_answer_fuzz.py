"""The app channel's connection reads an answer the same however the app's bytes are
cut into reads: status, lower-case fields, body and whether it may be reused; and
arbitrary bytes never escape as anything but the channel's own errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.app.connection import AppConnection
from proxy.app.http1_framing import AppProtocolError

Headers = list[tuple[bytes, bytes]]


class _Transport:
    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _cuts(data: bytes, points: list[int]) -> Iterator[bytes]:
    start = 0
    for point in sorted({p % (len(data) + 1) for p in points}):
        yield data[start:point]
        start = point
    yield data[start:]


def _read(data: bytes, points: list[int], head_request: bool = False) -> AppConnection:
    async def run() -> AppConnection:
        connection = AppConnection()
        connection.connection_made(_Transport())  # type: ignore[arg-type]
        connection.begin(head_request)
        for piece in _cuts(data, points):
            if piece:
                connection.data_received(piece)
        return connection

    return asyncio.run(run())


_names = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12)
_values = st.text("abcdefghij XYZ:;,=/0123456789", max_size=30).map(str.strip)
_fields = st.lists(st.tuples(_names, _values), max_size=6).map(
    lambda pairs: [
        (name.encode(), value.encode())
        for name, value in pairs
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    fields=_fields,
    body=st.binary(max_size=300),
    chunked=st.booleans(),
    informational=st.booleans(),
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_any_cut_of_an_answer_reads_the_same(
    fields: Headers, body: bytes, chunked: bool, informational: bool, points: list[int]
) -> None:
    head = b"".join(b"%s: %s\r\n" % field for field in fields)
    if chunked:
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
            for i in range(0, len(body), 7)
        )
        message = b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    else:
        message = b"Content-Length: %d\r\n\r\n" % len(body) + body
    data = (
        (b"HTTP/1.1 100 Continue\r\n\r\n" if informational else b"")
        + b"HTTP/1.1 201 Created\r\n"
        + head
        + message
    )
    connection = _read(data, points)
    expected = [(name.lower(), value) for name, value in fields]
    expected.append(
        (b"transfer-encoding", b"chunked") if chunked else (b"content-length", b"%d" % len(body))
    )
    assert (connection.status, connection.headers, connection.done) == (201, expected, True)
    assert connection.take_body() == body
    assert connection.reusable()


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=400),
    head_request=st.booleans(),
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=4),
)
def test_arbitrary_bytes_end_in_an_answer_or_the_channels_own_error(
    data: bytes, head_request: bool, points: list[int]
) -> None:
    # Prefixed sometimes with a valid status line, to get past the first byte.
    for prefix in (b"", b"HTTP/1.1 200 OK\r\n"):
        connection = _read(prefix + data, points, head_request)
        error = connection._error
        assert error is None or isinstance(error, AppProtocolError)
        if connection.done:
            assert connection.status >= 200
