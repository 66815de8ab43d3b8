"""WebSocketStream alone (sans-IO): wsproto's client side talks to it byte for byte, and a few
hand-made frames do what a library would refuse to send."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.ws_frames import mask, masked_frame_head
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Message, Ping, Pong, Request, TextMessage

from spice_twisted.channels.websocket import MAX_HEAD, WebSocketStream

KEY = b"\x0a\x0b\x0c\x0d"


def opened(max_message: int = 1024, subprotocols: tuple[str, ...] = ("binary",)) -> tuple[WebSocketStream, WSConnection]:
    stream, client = WebSocketStream(max_message), WSConnection(ConnectionType.CLIENT)
    got = stream.receive(client.send(Request(host="h", target="/websockify", subprotocols=list(subprotocols))))
    assert got.opened and got.close is None and stream.path == "/websockify"
    client.receive_data(got.reply)
    (accept,) = client.events()
    assert isinstance(accept, AcceptConnection)
    assert accept.subprotocol == ("binary" if subprotocols else None)
    return stream, client


def frame_head(opcode: int, length: int, fin: bool = True) -> bytes:
    return masked_frame_head(opcode, length, fin, KEY)


def masked(data: bytes, offset: int = 0) -> bytes:
    return mask(data, KEY, offset)


def closed_with(stream_reply: bytes, client: WSConnection) -> int:
    client.receive_data(stream_reply)
    codes = [ev.code for ev in client.events() if isinstance(ev, CloseConnection)]
    assert codes, "no close frame"
    return codes[0]


@pytest.mark.parametrize("subprotocols", [("binary",), ("base64", "binary"), ()])
def test_handshake_and_binary_messages_both_ways(subprotocols: tuple[str, ...]) -> None:
    stream, client = opened(subprotocols=subprotocols)
    got = stream.receive(client.send(Message(data=b"REDQ")) + client.send(Message(data=b"more")))
    assert got.payload == [b"REDQ", b"more"] and got.close is None
    client.receive_data(stream.frame(b"\x01\x02\x03"))
    (msg,) = client.events()
    assert isinstance(msg, BytesMessage) and msg.data == b"\x01\x02\x03" and msg.message_finished


def test_bytes_after_the_request_in_the_same_read_are_kept() -> None:
    stream, client = WebSocketStream(1024), WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="h", target="/", subprotocols=["binary"]))
    got = stream.receive(request + frame_head(2, 4) + masked(b"REDQ"))
    assert got.opened and got.payload == [b"REDQ"]


def test_payload_streams_out_before_its_frame_ends() -> None:
    """A frame claiming 1000 bytes: what has arrived is delivered at once, nothing waits
    for the whole frame (so a huge frame costs no memory before the bound)."""
    stream, _ = opened()
    got = stream.receive(frame_head(2, 1000) + masked(b"x" * 300))
    assert b"".join(got.payload) == b"x" * 300
    got = stream.receive(masked(b"y" * 700, 300))
    assert b"".join(got.payload) == b"y" * 700 and got.close is None


def test_message_over_the_bound_is_closed_1009_without_delivering_the_excess() -> None:
    stream, client = opened(max_message=1000)
    got = stream.receive(frame_head(2, 1 << 40) + masked(b"z" * 900))
    assert got.close is None and sum(map(len, got.payload)) == 900
    got = stream.receive(masked(b"z" * 200, 900))
    assert got.close is not None and "over 1000 bytes" in got.close and got.payload == []
    assert closed_with(got.reply, client) == 1009
    assert stream.receive(masked(b"z" * 10, 1100)).payload == []  # nothing after the close
    assert stream.frame(b"late") == b""


def test_the_bound_counts_a_fragmented_message_as_one() -> None:
    stream, client = opened(max_message=1000)
    got = stream.receive(frame_head(2, 600, fin=False) + masked(b"a" * 600))
    assert got.close is None
    got = stream.receive(frame_head(0, 600) + masked(b"b" * 600))
    assert got.close is not None and closed_with(got.reply, client) == 1009


def test_text_message_is_closed_1003() -> None:
    stream, client = opened()
    got = stream.receive(client.send(TextMessage(data="hi")))
    assert got.close is not None and not got.polite and closed_with(got.reply, client) == 1003


def test_ping_gets_a_pong_and_a_close_gets_its_answer() -> None:
    stream, client = opened()
    got = stream.receive(client.send(Ping(payload=b"p")))
    client.receive_data(got.reply)
    assert [type(ev) for ev in client.events()] == [Pong]
    got = stream.receive(client.send(CloseConnection(code=1000)))
    assert got.close is not None and got.polite
    assert closed_with(got.reply, client) == 1000


def test_unmasked_frame_is_a_protocol_error() -> None:
    stream, client = opened()
    got = stream.receive(bytes([0x82, 4]) + b"REDQ")
    assert got.close is not None and got.payload == [] and closed_with(got.reply, client) == 1002


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\x00\x01garbage\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: base64\r\n\r\n",
            400,
        ),
        (  # found by fuzz/targets.py: wsproto decodes Host with idna, which raised UnicodeDecodeError
            b"GET / HTTP/1.1\r\nHost: \xb0\xa1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
    ],
)
def test_bad_requests_get_an_http_error(request_bytes: bytes, status: int) -> None:
    stream = WebSocketStream(1024)
    got = stream.receive(request_bytes)
    assert got.close is not None and not got.opened
    assert got.reply.startswith(f"HTTP/1.1 {status} ".encode())
    assert stream.receive(b"more").reply == b""


def test_head_in_pieces_waits_then_opens() -> None:
    stream, client = WebSocketStream(1024), WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="h", target="/", subprotocols=["binary"]))
    for i in range(len(request) - 1):
        assert stream.receive(request[i : i + 1]).reply == b""
    assert stream.receive(request[-1:]).opened


# --- property tests ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_arbitrary_bytes_after_the_handshake_never_raise(chunks: list[bytes]) -> None:
    stream, _ = opened(max_message=500)
    delivered = 0
    for chunk in chunks:
        got = stream.receive(chunk)
        delivered += sum(map(len, got.payload))
        if got.close is not None:
            assert stream.receive(b"\x82\x80" + KEY).payload == []
            break
    assert delivered <= sum(map(len, chunks))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_as_the_request_never_raise(data: bytes) -> None:
    stream = WebSocketStream(500)
    got = stream.receive(b"GET " + data)
    assert got.payload == [] or got.opened


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=50),
)
def test_any_split_of_the_wire_gives_the_same_byte_stream(messages: list[bytes], cuts: list[int]) -> None:
    stream, client = opened(max_message=1 << 20)
    wire = b"".join(client.send(Message(data=m)) for m in messages)
    got, at, i = b"", 0, 0
    while at < len(wire):
        step = cuts[i % len(cuts)]
        r = stream.receive(wire[at : at + step])
        assert r.close is None
        got += b"".join(r.payload)
        at, i = at + step, i + 1
    assert got == b"".join(messages)
