"""How the app channel reads its app's answers (RFC 9112 framing), against a raw
loopback app that answers each request with scripted bytes: bodies ended by length,
by chunks, by the connection's close, or not at all (HEAD, 204, 304); informational
answers skipped; which connections go back to the pool; broken answers refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from proxy.app.channel import HttpAppChannel
from proxy.core.body import Body
from proxy.core.errors import AppChannelError

HOST = "127.0.0.1"
# Upper bound for any single wait; never asserted as a duration.
WAIT = 10.0
KiB = 1024

# What the app does for one request: bytes to send (each written and drained in
# turn), then whether to close the connection.
Answer = tuple[list[bytes], bool]


@dataclass
class ScriptedApp:
    """Answers the n-th request it reads (over all connections) with ``answers[n]``."""

    answers: list[Answer]
    requests: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await _read_body(reader, head)
                index = len(self.requests)
                self.requests.append((number, head, body))
                pieces, close = self.answers[index]
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    fields = head.lower()
    if b"\r\ntransfer-encoding: chunked\r\n" in fields:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += data[:-2]
    for line in fields.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


def _run(
    answers: list[Answer], scenario: Callable[[HttpAppChannel, ScriptedApp], Awaitable[None]]
) -> None:
    async def main() -> None:
        app = ScriptedApp(answers)
        server = await asyncio.start_server(app.serve, HOST, 0)
        channel = HttpAppChannel(HOST, server.sockets[0].getsockname()[1])
        try:
            await asyncio.wait_for(scenario(channel, app), WAIT)
        finally:
            await channel.close()
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    asyncio.run(main())


def ok(body: bytes = b"ok", extra: bytes = b"") -> Answer:
    return [b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n%s" % (extra, len(body), body)], False


async def call(channel: HttpAppChannel, verb: str = "GET", body: Body | None = None) -> bytes:
    response = await channel.call(verb, "/m", [], body or Body())
    return await response.body.read_all(1 << 30)


def test_an_answer_to_head_ends_at_its_head_and_the_connection_serves_the_next_call() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("HEAD", "/m", [], Body())
        assert response.status == 200
        assert response.body.complete and response.body.head == b""
        assert response.body.length == 40  # the length a GET would have had
        assert len(channel._idle) == 1
        assert await call(channel) == b"after head"
        assert app.connections == 1

    _run([([b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n"], False), ok(b"after head")], scenario)


def test_an_answer_to_head_without_a_length_is_not_read_to_the_close() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("HEAD", "/m", [], Body())
        assert (response.status, response.body.complete) == (200, True)
        assert await call(channel) == b"next"
        assert app.connections == 1

    _run([([b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n"], False), ok(b"next")], scenario)


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_whatever_they_declare(status: int) -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("GET", "/m", [], Body())
        assert response.status == status
        assert response.body.complete and response.body.head == b""
        assert await call(channel) == b"next"
        assert app.connections == 1

    first = b"HTTP/1.1 %d X\r\ncontent-length: 9\r\n\r\n" % status
    _run([([first], False), ok(b"next")], scenario)


def test_100_continue_before_the_answer_is_skipped() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("POST", "/m", [], Body(b"data"))
        assert response.status == 201
        assert response.headers == [(b"content-length", b"7")]
        assert await response.body.read_all(100) == b"created"
        assert len(channel._idle) == 1

    continues = b"HTTP/1.1 100 Continue\r\n\r\n"
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated"
    hints = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    # Two informational answers in one write, then the answer in its own.
    _run([([continues + hints, answer], False)], scenario)


def test_a_body_without_length_or_chunks_runs_to_the_close_and_the_connection_is_dropped() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: read through the streaming path

    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        assert await call(channel) == b"short and closed"
        assert await call(channel) == big
        assert channel._idle == []
        assert app.connections == 2

    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n"
    _run(
        [([head + b"short and closed"], True), ([head, big[: 100 * KiB], big[100 * KiB :]], True)],
        scenario,
    )


def test_a_chunked_answer_is_read_whole_and_the_connection_pooled() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("GET", "/m", [], Body())
        assert response.body.length is None
        assert await response.body.read_all(1 << 20) == b"hello, world" + b"z" * 70000
        assert await call(channel) == b"next"
        assert app.connections == 1

    pieces = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"7;ext=1\r\n, world\r\n",
        b"%x\r\n%s\r\n0\r\nx-trailer: t\r\n\r\n" % (70000, b"z" * 70000),
    ]
    _run([(pieces, False), ok(b"next")], scenario)


@pytest.mark.parametrize(
    ("first", "pooled"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    ],
    ids=["connection_close", "http_1_0", "http_1_0_keep_alive", "http_1_1"],
)
def test_which_answers_leave_the_connection_in_the_pool(first: bytes, pooled: bool) -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        assert await call(channel) == b"ok"
        assert len(channel._idle) == (1 if pooled else 0)
        assert await call(channel) == b"next"
        assert app.connections == (1 if pooled else 2)

    # The app keeps its side open: only the answer's words decide.
    _run([([first], False), ok(b"next")], scenario)


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n", b"x" * 100000],
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"],
    ],
    ids=["small", "large", "chunked"],
)
def test_an_answer_cut_mid_body_is_an_error_not_a_short_body(pieces: list[bytes]) -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("GET", "/m", [], Body())
        assert response.status == 200
        with pytest.raises(AppChannelError, match="mid-response"):
            await response.body.read_all(1 << 20)
        assert channel._idle == []

    _run([(pieces, True)], scenario)


def test_an_answer_cut_mid_head_is_an_error() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        with pytest.raises(AppChannelError, match="mid-response"):
            await channel.call("POST", "/m", [], Body(b"x"))
        assert len(app.requests) == 1  # answered in part: never sent again

    _run([([b"HTTP/1.1 200 OK\r\nContent-Le"], True)], scenario)


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))],
        [b"HTTP/1.1 200 OK\r\nx-endless: ", b"v" * 40 * KiB, b"v" * 40 * KiB],
    ],
    ids=["many_fields", "one_endless_field"],
)
def test_a_response_head_over_64_kib_is_refused(pieces: list[bytes]) -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        with pytest.raises(AppChannelError, match="exceeds 65536 bytes"):
            await channel.call("GET", "/m", [], Body())
        assert channel._idle == []

    # The app would go on (and then end its head): the sidecar stops reading first.
    _run([([*pieces, b"content-length: 0\r\n\r\n"], False)], scenario)


def test_a_head_just_under_64_kib_is_read() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("GET", "/m", [], Body())
        assert len(response.headers) == 61
        assert await response.body.read_all(10) == b"ok"

    fields = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(60))
    _run([ok(b"ok", fields)], scenario)


def test_header_names_come_lower_case_and_values_without_surrounding_space() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        response = await channel.call("GET", "/m", [], Body())
        assert response.headers == [
            (b"content-type", b"text/plain"),
            (b"x-mixed-case", b"Keep This Case"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"content-length", b"2"),
        ]

    fields = (
        b"Content-Type: text/plain\r\nX-MiXeD-CaSe:   Keep This Case \t\r\n"
        b"Set-Cookie: a=1\r\nSET-COOKIE: b=2\r\n"
    )
    _run([ok(b"ok", fields)], scenario)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
    ids=["length_and_chunked", "two_lengths", "unknown_coding", "bare_cr", "upgrade", "garbage"],
)
def test_a_broken_answer_is_an_error_and_the_connection_dropped(answer: bytes) -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        with pytest.raises(AppChannelError, match="error calling the app"):
            await channel.call("GET", "/m", [], Body())
        assert channel._idle == []
        assert await call(channel) == b"next"
        assert app.connections == 2

    _run([([answer], False), ok(b"next")], scenario)


def test_bytes_beyond_the_answer_keep_it_but_drop_the_connection() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        assert await call(channel) == b"ok"
        assert channel._idle == []
        assert await call(channel) == b"next"
        assert app.connections == 2

    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    _run([([answer + extra], False), ok(b"next")], scenario)


def test_requests_reach_the_app_framed_as_their_bodies_are() -> None:
    async def rest() -> AsyncIterator[bytes]:
        yield b"two"
        yield b"three"

    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        await call(channel, "GET")
        await call(channel, "POST")
        await call(channel, "POST", Body(b"one", rest()))
        await call(channel, "PUT", Body(b"one", rest(), length=11))
        heads = [head for _, head, _ in app.requests]
        port = channel.port
        assert heads[0] == b"GET /m HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % port
        assert heads[1].endswith(b"\r\ncontent-length: 0\r\n\r\n")
        assert heads[2].endswith(b"\r\ntransfer-encoding: chunked\r\n\r\n")
        assert heads[3].endswith(b"\r\ncontent-length: 11\r\n\r\n")
        assert [body for _, _, body in app.requests] == [b"", b"", b"onetwothree", b"onetwothree"]
        assert app.connections == 1

    _run([ok(), ok(), ok(), ok()], scenario)


@pytest.mark.parametrize("declared", [5, 20], ids=["longer", "shorter"])
def test_a_streamed_body_that_breaks_its_declared_length_is_refused(declared: int) -> None:
    async def rest() -> AsyncIterator[bytes]:
        yield b"two"
        yield b"three"

    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        with pytest.raises(AppChannelError, match="Content-Length"):
            await channel.call("POST", "/m", [], Body(b"one", rest(), length=declared))
        assert channel._idle == []

    _run([], scenario)


def test_a_header_value_with_a_line_break_never_reaches_the_app() -> None:
    async def scenario(channel: HttpAppChannel, app: ScriptedApp) -> None:
        with pytest.raises(AppChannelError, match="control character"):
            await channel.call("GET", "/m", [(b"x-a", b"1\r\nx-injected: 2")], Body())
        assert app.requests == []

    _run([], scenario)
