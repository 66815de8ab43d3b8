"""The sans-IO channel core alone: bytes in, events out, the ACK window and pings."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spice_twisted.wire.channel import AckCredit, ChannelCore, Pong, ProtocolError, Received
from spice_twisted.wire.enums import ChannelType, MsgcCommon, MsgcInputs
from spice_twisted.wire.framer import Framer

MINI = struct.Struct("<HI")


def frame(msg_type: int, body: bytes = b"") -> bytes:
    return MINI.pack(msg_type, len(body)) + body


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


STREAM = (
    frame(MsgcInputs.KEY_DOWN, struct.pack("<I", 0x1E))
    + frame(MsgcCommon.ACK_SYNC, struct.pack("<I", 1))
    + frame(MsgcInputs.MOUSE_POSITION, struct.pack("<IIHB", 10, 20, 1, 0))
    + frame(MsgcCommon.ACK)
    + frame(MsgcInputs.KEY_UP, struct.pack("<I", 0x9E))
)


def _names(events) -> list[str]:
    return [ev.message.name if isinstance(ev, Received) else type(ev).__name__ for ev in events]


@given(st.lists(st.integers(0, len(STREAM)), max_size=8))
def test_any_split_gives_the_same_events(cuts):
    core = ChannelCore(ChannelType.INPUTS, mini_header=True, handles_acks=True)
    core.set_ack(1)
    events = []
    pos = 0
    for cut in sorted(cuts) + [len(STREAM)]:
        events += core.receive_data(STREAM[pos:cut])
        pos = cut
    assert _names(events) == ["KEY_DOWN", "MOUSE_POSITION", "AckCredit", "KEY_UP"]
    assert events[1].fields == {"x": 10, "y": 20, "buttons_state": 1, "display_id": 0}


def test_ack_window_counts_headers_and_only_current_generation_acks_free_it():
    core = ChannelCore(ChannelType.DISPLAY, mini_header=True, handles_acks=True)
    msg_type, body = core.set_ack(5)
    assert struct.unpack("<II", body) == (1, 5)
    for _ in range(11):
        core.header(300, 10)
    assert core.waiting_for_ack  # more than 2 x window unacknowledged
    assert core.receive_data(frame(MsgcCommon.ACK)) == []  # no ACK_SYNC of generation 1 yet
    assert core.waiting_for_ack
    events = core.receive_data(frame(MsgcCommon.ACK_SYNC, struct.pack("<I", 1)) + frame(MsgcCommon.ACK))
    assert events == [AckCredit()] and core.unacked == 6 and not core.waiting_for_ack
    core.set_ack(5)  # a new generation: ACKs of the old one no longer count
    core.header(300, 10)
    assert core.receive_data(frame(MsgcCommon.ACK)) == [] and core.unacked == 1


def test_headers_mini_and_full():
    mini = ChannelCore(ChannelType.MAIN, mini_header=True, handles_acks=False)
    assert mini.header(103, 32) == MINI.pack(103, 32)
    full = ChannelCore(ChannelType.MAIN, mini_header=False, handles_acks=False)
    assert [struct.unpack("<QHII", full.header(4, 12))[0] for _ in range(3)] == [1, 2, 3]
    assert Framer(mini=False).feed(full.header(4, 0)) == [(4, b"")]


def test_ping_pong_round_trip_and_forged_pongs_ignored():
    clock = FakeClock()
    core = ChannelCore(ChannelType.MAIN, mini_header=True, handles_acks=False, clock_ns=clock)
    _, body = core.ping()
    ping_id, stamp = struct.unpack_from("<IQ", body)
    clock.now += 2_500_000
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", ping_id, stamp + 1))) == []  # wrong stamp
    _, body = core.ping()
    ping_id, stamp = struct.unpack_from("<IQ", body)
    clock.now += 1_000_000
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", ping_id, stamp))) == [Pong(0.001)]
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", ping_id, stamp))) == []  # answered once


@pytest.mark.parametrize(
    "data",
    [
        frame(999),  # unknown type
        frame(MsgcInputs.MOUSE_POSITION, b"\x01\x02"),  # truncated body
        MINI.pack(MsgcInputs.KEY_SCANCODE, (1 << 20) + 1),  # claims more than the limit
    ],
)
def test_bad_input_raises_protocol_error(data):
    core = ChannelCore(ChannelType.INPUTS, mini_header=True, handles_acks=False)
    with pytest.raises(ProtocolError):
        core.receive_data(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_protocol_error(data):
    core = ChannelCore(ChannelType.DISPLAY, mini_header=True, handles_acks=True)
    try:
        core.receive_data(data)
    except ProtocolError:
        pass
