"""The HTTP/1.1 framing both ends share: chunks and Connection options."""

from __future__ import annotations

from proxy.core.http1 import LAST_CHUNK, chunk, connection_options


def test_chunks_frame_in_hex_and_pass_the_data_through() -> None:
    data = b"x" * 300
    framed = chunk(data)
    assert framed == (b"12c\r\n", data, b"\r\n")
    assert framed[0] == b"12c\r\n" and framed[1] is data and framed[2] == b"\r\n"
    assert chunk(b"") == ()  # a zero-size chunk would end the body
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_connection_options_are_tokens_of_every_value_lower_cased() -> None:
    assert connection_options([b"Keep-Alive, Upgrade", b" CLOSE ,"]) == {
        b"keep-alive",
        b"upgrade",
        b"close",
    }
    assert connection_options([]) == set()
    # An option is a whole token: "closed" is not "close".
    assert b"close" not in connection_options([b"closed, x-close-later"])
