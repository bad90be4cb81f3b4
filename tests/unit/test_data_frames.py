"""DATA frames written and read beside h2 must leave the wire and h2's state exactly
as h2 itself would, and hand h2 everything it has to judge."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamEnded
from h2.exceptions import FlowControlError, FrameTooLargeError, ProtocolError
from hyperframe.frame import DataFrame, HeadersFrame

from proxy.grpcwire.data_frames import InboundFrames, send_data

HEADERS = [
    (b":method", b"POST"),
    (b":path", b"/pkg.Svc/Call"),
    (b":scheme", b"https"),
    (b":authority", b"peer"),
    (b"content-type", b"application/grpc"),
]


def _config(client: bool) -> H2Configuration:
    return H2Configuration(client_side=client, header_encoding=None)


def _pair() -> tuple[H2Connection, H2Connection, bytes]:
    """A client and server past the preface and settings, stream 1 open; the
    server has not yet read the client's first bytes (returned)."""
    client, server = H2Connection(_config(True)), H2Connection(_config(False))
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, HEADERS)
    first = client.data_to_send()
    return client, server, first


def _open_pair() -> tuple[H2Connection, H2Connection]:
    client, server, first = _pair()
    server.receive_data(first)
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # the settings ACK
    return client, server


def test_a_sent_frame_is_the_bytes_h2_writes_and_costs_the_same_window() -> None:
    ours, theirs = _open_pair()[0], _open_pair()[0]
    for size in (1, 1024, 16_384):
        send_data(ours, 1, b"m" * size)
        theirs.send_data(1, b"m" * size)
        assert ours.data_to_send() == theirs.data_to_send()
        assert ours.local_flow_control_window(1) == theirs.local_flow_control_window(1)
        assert ours.outbound_flow_control_window == theirs.outbound_flow_control_window


def test_sending_what_h2_refuses_raises_what_h2_raises() -> None:
    client, _ = _open_pair()
    with pytest.raises(FrameTooLargeError):
        send_data(client, 1, b"x" * (client.max_outbound_frame_size + 1))
    window = client.local_flow_control_window(1)
    with pytest.raises(FlowControlError):
        send_data(client, 1, b"x" * (window + 1))
    client.end_stream(1)
    with pytest.raises(ProtocolError):
        send_data(client, 1, b"x")


def _received(server: H2Connection, inbound: InboundFrames | None, data: bytes) -> list[object]:
    """What the server's handler sees: ("data", stream, payload) and h2's other events,
    read the way the connections read (``for_h2``), or by h2 alone."""
    seen: list[object] = []

    def taken(stream_id: int, payload: bytes, size: int) -> None:
        assert size == len(payload)
        seen.append(("data", stream_id, payload))

    chunks = [data] if inbound is None else inbound.for_h2(data, taken)
    for chunk in chunks:
        for event in server.receive_data(chunk):
            if isinstance(event, DataReceived):
                seen.append(("data", event.stream_id, event.data))
            else:
                seen.append(type(event).__name__)
    return seen


def _conversation() -> tuple[bytes, list[bytes]]:
    """Everything a client sends on a new connection: preface, settings, a call with
    DATA frames of several sizes, a window update, a ping, and a last DATA frame with
    END_STREAM; and the payloads in order."""
    client, _, first = _pair()
    wire = bytearray(first)
    payloads = [b"a" * 5, b"b" * 1000, b"c" * 16_384, b"d"]
    for payload in payloads[:2]:
        client.send_data(1, payload)
    client.increment_flow_control_window(1000)
    client.ping(b"12345678")
    client.send_data(1, payloads[2])
    client.send_data(1, payloads[3], end_stream=True)
    wire += client.data_to_send()
    return bytes(wire), payloads


def _data_of(seen: list[object]) -> list[bytes]:
    return [item[2] for item in seen if isinstance(item, tuple)]


@pytest.mark.parametrize("cut", [1, 7, 9, 24, 30, 100, 1500, 9000, 17_000])
def test_read_in_pieces_the_handler_sees_what_h2_alone_would(cut: int) -> None:
    wire, payloads = _conversation()
    plain = H2Connection(_config(False))
    plain.initiate_connection()
    expected = _received(plain, None, wire)

    server = H2Connection(_config(False))
    server.initiate_connection()
    inbound = InboundFrames(server)
    seen: list[object] = []
    for start in range(0, len(wire), cut):
        seen += _received(server, inbound, wire[start : start + cut])

    assert _data_of(seen) == _data_of(expected) == payloads
    # h2's own events (settings, ping, the end of the stream) come just the same.
    assert [e for e in seen if isinstance(e, str)] == [e for e in expected if isinstance(e, str)]
    assert "StreamEnded" in seen
    # And h2 counted every byte against the same windows.
    for state in (server, plain):
        state.acknowledge_received_data(sum(map(len, payloads)), 1)
    assert server.data_to_send() == plain.data_to_send()


def test_the_first_read_is_h2s_and_later_data_frames_are_taken() -> None:
    client, server, first = _pair()
    inbound = InboundFrames(server)
    client.send_data(1, b"x" * 100)
    opening = first + client.data_to_send()
    assert inbound.feed(opening) == [(0, opening)]  # the preface is h2's to check
    server.receive_data(opening)
    client.send_data(1, b"y" * 100)
    [(stream_id, frame)] = inbound.feed(client.data_to_send())
    assert stream_id == 1
    assert inbound.take(1, frame) == b"y" * 100


def test_data_frames_on_an_open_stream_pass_beside_h2() -> None:
    client, server = _open_pair()
    inbound = InboundFrames(server)
    client.send_data(1, b"p" * 100)
    client.send_data(1, b"q" * 50)
    taken: list[bytes] = []
    for_h2 = list(inbound.for_h2(client.data_to_send(), lambda _, data, __: taken.append(data)))
    assert taken == [b"p" * 100, b"q" * 50]
    assert for_h2 == []


def test_an_oversized_frame_is_h2s_to_refuse_and_not_buffered_here() -> None:
    _, server = _open_pair()
    inbound = InboundFrames(server)
    frame = DataFrame(1)
    frame.data = b"z" * (server.max_inbound_frame_size + 1)
    wire = frame.serialize()
    assert _received(server, inbound, wire[:100]) == []
    assert inbound._rest == b""  # h2 holds it
    with pytest.raises(FrameTooLargeError):
        _received(server, inbound, wire[100:])


def test_data_past_the_window_is_h2s_to_refuse() -> None:
    _, server = _open_pair()
    inbound = InboundFrames(server)
    list(inbound.feed(b""))
    window = server._get_stream_by_id(1)._inbound_window_manager.current_window_size
    frame = DataFrame(1)
    frame.data = b"w" * 16_000
    wire = frame.serialize() * (window // 16_000 + 1)
    with pytest.raises(FlowControlError):
        _received(server, inbound, wire)


def test_data_inside_a_header_block_is_h2s_to_refuse() -> None:
    client, server = _open_pair()
    inbound = InboundFrames(server)
    list(inbound.feed(b""))
    block = client.encoder.encode(HEADERS)
    headers = HeadersFrame(3)
    headers.data = block[:3]  # no END_HEADERS: a CONTINUATION must follow
    data = DataFrame(1)
    data.data = b"v"
    with pytest.raises(ProtocolError):
        _received(server, inbound, headers.serialize() + data.serialize())


def test_data_on_a_stream_the_peer_ended_is_answered_as_h2_answers_it() -> None:
    outcomes = []
    for inbound_on in (False, True):
        client, server = _open_pair()
        inbound = InboundFrames(server) if inbound_on else None
        if inbound is not None:
            list(inbound.feed(b""))
        client.end_stream(1)
        ended = _received(server, inbound, client.data_to_send())
        assert ended == [("data", 1, b""), StreamEnded.__name__]
        late = DataFrame(1)
        late.data = b"late"
        try:
            seen: object = _received(server, inbound, late.serialize())
        except ProtocolError as exc:
            seen = type(exc)
        outcomes.append((seen, server.data_to_send()))
    assert outcomes[0] == outcomes[1]
