"""Bytes of one client connection into requests: an ``httptools.HttpRequestParser``
(llhttp) whose callbacks fill the request being parsed.

llhttp parses everything it is fed, pipelined requests included, and cannot pause; so
every request it begins goes into ``queue`` in order, and the connection takes them
from there one at a time, while each one's body pieces collect on it (or go on to a
streamed body's reader, which takes them from the same place). A request the parser or
our checks refuse gets its ``error`` at its place in the queue, and parsing stops: the
connection answers the requests before it, then the error, and closes. Head sizes are
counted here as the head arrives, since llhttp has no limit of its own.
"""

from __future__ import annotations

from collections import deque

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from proxy.edge.framing import (
    LINE_EXTRA,
    MAX_METHOD,
    head_size_problem,
    judge_head,
    method_answer,
    parser_error_answer,
)
from proxy.edge.http_messages import HttpLimits

# Requests parsed ahead of the one being answered (pipelining) at most; past that the
# last of them closes the connection and the rest is dropped (clients retry them).
# llhttp parses a whole read at once, so this bounds what one read can cost in
# parsed requests (about 1.5 KB each) where h11 held the raw bytes.
MAX_QUEUED = 100
# The framing lines of the head ``_resume_body`` gives a new parser.
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_LENGTH = b"Content-Length: %d\r\n\r\n"
# How much of a request's first bytes is kept to tell an unknown method from garbage.
_METHOD_PEEK = MAX_METHOD + 8


class Incoming:
    """One request as the parser delivers it."""

    __slots__ = (
        "chunked",
        "complete",
        "error",
        "expect_continue",
        "head_done",
        "headers",
        "http10",
        "keep_alive",
        "length",
        "method",
        "parts",
        "peek",
        "size",
        "upgrade_body",
        "url",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False  # the head is whole and accepted
        self.complete = False  # the body too
        # (status, reason) when refused: before ``head_done`` the head, after it the body.
        self.error: tuple[int, str] | None = None
        self.parts: deque[bytes] = deque()  # body pieces not taken yet
        self.size = 0  # body bytes received
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.http10 = False
        self.expect_continue = False
        # The first bytes while the request line is incomplete (None: not known).
        self.peek: bytes | None = b""
        # Upgrade (or CONNECT) with a body: llhttp stops before the body (see feed).
        self.upgrade_body = False


class _Stop(Exception):
    """Raised in a callback to stop llhttp after recording why (never escapes ``feed``)."""


class RequestReader:
    def __init__(self, limits: HttpLimits) -> None:
        self._parser = HttpRequestParser(self)
        self._limit = limits.max_header_bytes
        self._max_body = limits.max_body_size
        self.queue: deque[Incoming] = deque()
        self._parsing: Incoming | None = None  # the request llhttp is inside of
        self.stopped = False  # refused something: what follows is not parsed
        self._line = 0  # bytes of the request line so far (target and the rest)
        self._headers = 0  # bytes of the headers reported so far
        self._reads = 0  # bytes of the reads that began inside the head (a lower bound)
        self._began_here = False  # the request in progress began in the current read
        self._begun = 0  # requests begun in the current read
        # The first bytes of a request whose method llhttp refused, while they do
        # not tell yet whether it is unknown (501) or malformed (400).
        self._method_start: bytes | None = None
        self._progress = False  # a head ended or body bytes came since the last read ended
        self._stalled = 0  # bytes of chunked-body reads without a body byte in a row
        # The upgrade request whose body a new parser is about to read (_resume_body).
        self._resuming: Incoming | None = None

    @property
    def idle(self) -> bool:
        """Nothing received beyond the requests taken from the queue."""
        return not self.queue and self._parsing is None and not self.stopped

    def feed(self, data: bytes) -> None:
        if self.stopped:
            if self._method_start is not None:
                self._judge_method(self._method_start + data[:_METHOD_PEEK], final=False)
            return
        fresh = self._parsing is None
        self._began_here = False
        self._begun = 0
        while True:
            try:
                self._parser.feed_data(data)
            except HttpParserUpgrade as exc:
                # We never switch protocols: what follows a request with Upgrade (or
                # CONNECT) is its body, if it has one, then the next request.
                data = data[exc.args[0] :]
                message = self._parsing
                if message is not None and message.upgrade_body:
                    self._resume_body(message)
                    continue
                if data:
                    continue
            except HttpParserCallbackError as exc:
                if not isinstance(exc.__context__, _Stop):
                    raise  # a bug of ours (the cause is chained): let it be logged
            except HttpParserInvalidMethodError:
                start = self._method_bytes(data, fresh)
                if start is None:
                    self._refuse(400, "invalid request method")
                else:
                    self.stopped = True
                    self._judge_method(start, final=False)
            except HttpParserError as exc:
                self._refuse(*parser_error_answer(exc))
            break
        message = self._parsing
        if message is None or self.stopped:
            return
        if not message.head_done:
            self._head_in_pieces(message, data, fresh)
        elif message.chunked:
            self._chunk_framing(data)

    def eof(self) -> None:
        """The client sent its last byte: a request it broke off is malformed."""
        if self._method_start is not None:
            self._judge_method(self._method_start, final=True)
        elif self._parsing is not None and not self.stopped:
            self._refuse(400, "the connection closed in the middle of the request")

    def _judge_method(self, start: bytes, final: bool) -> None:
        """Answer a refused method once its first bytes tell 501 from 400."""
        answer = method_answer(start, final)
        if answer is None:
            self._method_start = start  # all token so far: wait for its end
        else:
            self._method_start = None
            self._refuse(*answer)

    def _resume_body(self, message: Incoming) -> None:
        """llhttp hands what follows an upgrade request over unparsed, body included:
        a new parser, told the body's framing by a head of ours, reads it on."""
        message.upgrade_body = False
        self._resuming = message
        self._parser = HttpRequestParser(self)
        if message.chunked:
            self._parser.feed_data(b"PUT / HTTP/1.1\r\nHost: x\r\n" + _CHUNKED + b"\r\n")
        else:
            self._parser.feed_data(b"PUT / HTTP/1.1\r\nHost: x\r\n" + _LENGTH % message.length)

    def _head_in_pieces(self, message: Incoming, data: bytes, fresh: bool) -> None:
        """A head that does not end in this read. A read that began inside it belongs to
        it whole: counting those bounds what llhttp holds of a header not reported yet."""
        began_here = self._began_here
        if not began_here:
            self._reads += len(data)
        if not message.url:
            if began_here:
                message.peek = data[:_METHOD_PEEK] if fresh and self._begun == 1 else None
            elif message.peek is not None:
                message.peek = (message.peek + data)[:_METHOD_PEEK]
        if not self._size_ok(message):
            self._refuse_size(message)

    def _chunk_framing(self, data: bytes) -> None:
        """Reads with no body bytes (after the one the head ended in) are chunk framing,
        extensions or trailers, which llhttp holds or skips without a limit: bound them
        like a head."""
        if self._progress:
            self._progress = False
            self._stalled = 0
            return
        self._stalled += len(data)
        if self._stalled > self._limit:
            self._refuse(400, f"chunk extensions or trailers exceed {self._limit} bytes")

    def _method_bytes(self, data: bytes, fresh: bool) -> bytes | None:
        """The first bytes of the request whose method llhttp refused, if known."""
        message = self._parsing
        if message is None:
            return None
        if not self._began_here:
            return None if message.peek is None else message.peek + data[:_METHOD_PEEK]
        if fresh and self._begun == 1:
            return data[:_METHOD_PEEK]
        return None  # behind another request in the same read: where it began is unknown

    def _size_ok(self, message: Incoming) -> bool:
        line = len(message.method) + self._line + LINE_EXTRA
        return line + max(self._headers, self._reads - line) <= self._limit

    def _refuse_size(self, message: Incoming) -> None:
        line = len(message.method) + self._line + LINE_EXTRA
        headers = max(self._headers, self._reads - line, self._limit + 1 - line)
        self._refuse(*head_size_problem(line, headers, self._limit))

    def _refuse(self, status: int, reason: str) -> None:
        """Record why parsing ends, at the place in the queue where it happened."""
        self.stopped = True
        message = self._parsing
        if message is None:
            message = Incoming()
            self.queue.append(message)
        if message.error is None:
            message.error = (status, reason)

    # -- llhttp's callbacks

    def on_message_begin(self) -> None:
        if self._resuming is not None:
            self._parsing = Incoming()  # our own head for _resume_body: not a request
            return
        queue = self.queue
        if len(queue) >= MAX_QUEUED:
            queue[-1].keep_alive = False
            self.stopped = True
            raise _Stop
        self._parsing = message = Incoming()
        queue.append(message)
        self._line = self._headers = self._reads = self._stalled = 0
        self._began_here = True
        self._begun += 1

    def on_url(self, piece: bytes) -> None:
        message = self._parsing
        assert message is not None
        message.url += piece
        self._line = len(message.url)
        if self._line > self._limit:
            self._refuse_size(message)
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        message = self._parsing
        assert message is not None
        if message.head_done:
            return  # a trailer: dropped, as before
        self._headers += len(name) + len(value) + 4
        message.headers.append((name.lower(), value))
        if self._line + self._headers > self._limit and not self._size_ok(message):
            self._refuse_size(message)
            raise _Stop

    def on_headers_complete(self) -> None:
        resumed = self._resuming
        if resumed is not None:
            self._resuming = None
            self._parsing = resumed
            return
        message = self._parsing
        assert message is not None
        parser = self._parser
        message.method = parser.get_method()
        if not self._size_ok(message):
            self._refuse_size(message)
            raise _Stop
        version = parser.get_http_version()
        verdict = judge_head(version, message.headers)
        if verdict.status:
            self._refuse(verdict.status, verdict.reason)
            raise _Stop
        length = verdict.length
        if length is not None and length > self._max_body:
            limit = self._max_body
            self._refuse(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
            raise _Stop
        message.length = length
        message.chunked = verdict.chunked
        message.keep_alive = verdict.keep_alive
        message.http10 = version == "1.0"
        message.expect_continue = verdict.expect_continue
        message.upgrade_body = (verdict.chunked or bool(length)) and parser.should_upgrade()
        message.head_done = True
        self._progress = True

    def on_body(self, piece: bytes) -> None:
        message = self._parsing
        assert message is not None
        message.parts.append(piece)
        message.size += len(piece)
        self._progress = True
        if message.size > self._max_body:
            self._refuse(413, f"body exceeds the limit of {self._max_body} bytes")
            raise _Stop

    def on_message_complete(self) -> None:
        message = self._parsing
        assert message is not None
        if message.upgrade_body:
            return  # llhttp skipped the body: it comes after the upgrade point
        message.complete = True
        self._parsing = None
