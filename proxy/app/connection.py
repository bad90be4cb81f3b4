"""One keep-alive connection from the sidecar to its app: an ``asyncio.Protocol``
feeding the app's bytes to llhttp (httptools' response parser), whose callbacks fill
the answer being read; the framing decisions are ``proxy.app.http1_framing``'s.

Bytes from the app are parsed in ``data_received``; the task waiting for the answer
is woken only then (one future per wait, none per read call), and when nobody waits
(a streamed answer the edge has not asked for yet) reading pauses, so the kernel,
not our memory, holds the rest. Writes of streamed request bodies wait on the
transport's high-water mark."""

from __future__ import annotations

import asyncio

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from proxy.app.http1_framing import MAX_HEAD_BYTES, AppProtocolError, response_framing
from proxy.core.flow import FlowProtocol
from proxy.core.http1 import NO_BODY, UNTIL_CLOSE

Headers = list[tuple[bytes, bytes]]


class EmptyResponse(Exception):
    """The app closed a connection before sending a response."""


class AppConnection(FlowProtocol):
    """The answer being read is in ``status`` (0 until its head is in), ``headers``,
    ``content_length`` (declared) and ``done`` (all of it parsed); its body bytes
    are taken with ``take_body``/``next_body``."""

    __slots__ = (
        "_answered",
        "_eof",
        "_error",
        "_fed",
        "_fields",
        "_head_request",
        "_keep",
        "_lost",
        "_parser",
        "_pieces",
        "_renew",
        "_size",
        "_until_close",
        "_waiter",
        "_written",
        "content_length",
        "done",
        "headers",
        "idle",
        "status",
    )

    def __init__(self) -> None:
        super().__init__()
        self._parser = HttpResponseParser(self)
        # A HEAD answer leaves llhttp waiting for the body its fields announce: the
        # next exchange starts on a fresh parser.
        self._renew = False
        # Of the request in progress: did any of it go out, did any answer come back.
        self._written = False
        self._answered = False
        self._eof = False
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None
        self.idle = True
        self._head_request = False
        self.status = 0
        self.headers: Headers = []
        self.content_length: int | None = None
        self.done = False
        self._keep = False
        self._until_close = False
        self._error: Exception | None = None
        self._pieces: list[bytes] = []
        self._fields: Headers = []  # of the head (or trailers) being parsed
        self._size = 0  # bytes of those fields
        self._fed = 0  # bytes fed while the answer's head was incomplete

    @property
    def written(self) -> bool:
        return self._written

    @property
    def answered(self) -> bool:
        return self._answered

    # --- llhttp's callbacks (an exception raised here stops the parse for good) ---

    def on_message_begin(self) -> None:
        if self.done:
            raise AppProtocolError("the app sent more than its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._size = self._size + len(name) + len(value) + 4
        if size > MAX_HEAD_BYTES:
            raise AppProtocolError(f"the app's response head exceeds {MAX_HEAD_BYTES} bytes")
        # llhttp keeps a value's trailing whitespace, which is not part of it (RFC
        # 9110 section 5.5), and a name's case (tether compares lower-case names).
        self._fields.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        fields = self._fields
        self._fields = []  # trailers, if any, go there and are dropped
        self._size = 0
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise AppProtocolError("the app switched protocols unasked")
            return  # 100 Continue and the like: the answer follows
        framing, self.content_length, self._keep = response_framing(
            status, parser.get_http_version(), self._head_request, fields
        )
        self.headers = fields
        self.status = status
        self._until_close = framing == UNTIL_CLOSE
        if framing == NO_BODY and self._head_request:
            self.done = True  # llhttp cannot know that a HEAD answer ends here

    def on_body(self, body: bytes) -> None:
        if self.done:
            raise AppProtocolError("the app sent a body after its answer to HEAD")
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        if self.status:  # not an informational answer
            self.done = True

    # --- asyncio.Protocol ---

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # Nothing was asked: an unsolicited answer desyncs the connection (Go
            # drops such a connection too), so it is never used again.
            self.close()
            return
        self._answered = True
        if self._error is None:
            try:
                self._parser.feed_data(data)
            except (HttpParserError, HttpParserUpgrade) as exc:
                self._parse_failed(exc)
            if not self.status:
                # llhttp bounds no head: this stops one that never ends (httptools
                # holds a field cut across reads until it is whole).
                self._fed += len(data)
                if self._fed > MAX_HEAD_BYTES and self._error is None:
                    self._error = AppProtocolError(
                        f"the app's response head exceeds {MAX_HEAD_BYTES} bytes"
                    )
        self._wake()

    def _parse_failed(self, exc: Exception) -> None:
        if self.done:
            # Bytes beyond a complete answer: out of step, so never reused.
            self._keep = False
            return
        cause = exc.__context__
        if isinstance(cause, AppProtocolError):
            self._error = cause
        else:
            error = AppProtocolError(f"the app's answer is not valid HTTP/1.1: {exc}")
            error.__cause__ = cause or exc
            self._error = error

    def eof_received(self) -> bool:
        self._eof = True
        if self.status and not self.done and self._until_close:
            self.done = True  # a close-delimited body ends here
        self._wake_waiter()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        super().connection_lost(exc)
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
            return
        # Nobody reads the answer now (or the reader is already woken: libuv reads a
        # socket up to 32 times per loop turn): leave the rest in the kernel.
        self._pause_reading()

    # --- the exchange, for the channel ---

    def begin(self, head_request: bool) -> None:
        """A request starts on this connection (``head_request``: a HEAD)."""
        self.idle = False
        self._written = self._answered = False
        if self._renew:
            self._parser = HttpResponseParser(self)
        self._renew = self._head_request = head_request
        self.status = 0
        self.content_length = None
        self.done = self._keep = self._until_close = False
        self._fed = self._size = 0
        if self._fields:
            self._fields = []

    def is_closing(self) -> bool:
        transport = self._transport
        return self._eof or self._lost or transport is None or transport.is_closing()

    def send(self, *pieces: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            # Lost while idle (a reset, say); uvloop raises RuntimeError on a write here.
            raise ConnectionResetError("the connection to the app is closed")
        transport.writelines([piece for piece in pieces if piece])
        # asyncio closes the transport when the kernel refuses the first send (or drops
        # the write on a transport already lost); then not a byte of it went out.
        if not transport.is_closing():
            self._written = True

    async def drain(self) -> None:
        if self._write_paused:
            await self._drain()

    async def read_head(self) -> None:
        """Wait until the answer's head is in (informational answers skipped)."""
        while not self.status:
            self._check()
            await self._wait()

    def take_body(self) -> bytes:
        """The body bytes parsed so far and not yet taken."""
        pieces = self._pieces
        if not pieces:
            return b""
        self._pieces = []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def next_body(self) -> bytes | None:
        """More of the body, waiting for it if need be; None once it is all read."""
        while True:
            if self._pieces:
                return self.take_body()
            if self.done:
                return None
            self._check()
            await self._wait()

    def _check(self) -> None:
        """Raise what ended the answer before it was whole, if anything did."""
        if self._error is not None:
            raise self._error
        if self._eof:
            if not self._answered:
                raise EmptyResponse("the app closed the connection without answering")
            raise AppProtocolError("the app closed the connection mid-response")
        if self._lost:
            raise ConnectionResetError("the connection to the app was lost")

    async def _wait(self) -> None:
        self._resume_reading()
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def reusable(self) -> bool:
        return self.done and self._keep and not self._pieces and not self.is_closing()

    def recycle(self) -> None:
        self.idle = True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
