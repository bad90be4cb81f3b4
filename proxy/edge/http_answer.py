"""The bytes of the server's answers, from h11's server state machine: response heads
(with the Content-Length a whole body needs), whole responses as pieces the transport
writes together, and error answers that close the connection."""

from __future__ import annotations

import h11

from proxy.edge.http_messages import REASONS, ErrorBody, HttpResponse


def response_head(conn: h11.Connection, response: HttpResponse) -> bytes:
    """The head; raises h11.LocalProtocolError when the response is not valid HTTP."""
    headers = response.headers
    body = response.body
    if body.complete:
        for name, _ in headers:
            if name == b"content-length":
                break
        else:
            headers = [*headers, (b"content-length", b"%d" % len(body.head))]
    status = response.status
    head = h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
    return conn.send(head) or b""


def whole_response(conn: h11.Connection, head: bytes, data: bytes) -> list[bytes]:
    """Head, body and end as pieces: the body is passed through, not copied."""
    pieces = [head]
    if data:
        pieces += conn.send_with_data_passthrough(h11.Data(data=data)) or []
    pieces.append(conn.send(h11.EndOfMessage()) or b"")
    return pieces


def body_piece(conn: h11.Connection, chunk: bytes) -> list[bytes]:
    return conn.send_with_data_passthrough(h11.Data(data=chunk)) or []


def error_answer(conn: h11.Connection, error: ErrorBody) -> bytes:
    """A whole error response that tells the client the connection closes; raises
    h11.ProtocolError when an answer can no longer be sent."""
    headers = [
        (b"content-type", error.content_type),
        (b"content-length", b"%d" % len(error.body)),
        (b"connection", b"close"),
    ]
    status = error.status
    data = conn.send(
        h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
    )
    data = (data or b"") + (conn.send(h11.Data(data=error.body)) or b"")
    return data + (conn.send(h11.EndOfMessage()) or b"")
