"""Data-message framing: mini and full headers, any split of the byte stream, size limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spice_twisted.wire import messages
from spice_twisted.wire.framer import Framer, HeaderWriter
from spice_twisted.wire.schema import WireError, decode

MSGS: list[tuple[int, bytes]] = [
    (1, b""),
    (3, struct.pack("<II", 7, 20)),
    (304, bytes(range(256)) * 3),
    (0xFFFF, b"\x00"),
    (101, b"x" * 17),
    (2, b""),
    (111, b"\xff" * 1000),
]


def _stream(mini: bool, msgs: list[tuple[int, bytes]] = MSGS) -> bytes:
    # Built by hand, not with HeaderWriter, so the framer is checked against the wire format itself.
    out = b""
    for serial, (t, body) in enumerate(msgs, start=1):
        out += struct.pack("<HI", t, len(body)) if mini else struct.pack("<QHII", serial, t, len(body), 0)
        out += body
    return out


def _feed_in_chunks(framer: Framer, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out += framer.feed(data[prev:cut])
        prev = cut
    return out


@pytest.mark.parametrize("mini", [True, False], ids=["mini", "full"])
def test_one_blob(mini: bool) -> None:
    f = Framer(mini)
    assert f.feed(_stream(mini)) == MSGS
    assert f.buffered == 0


@pytest.mark.parametrize("mini", [True, False], ids=["mini", "full"])
def test_byte_by_byte_equals_one_blob(mini: bool) -> None:
    data = _stream(mini)
    f = Framer(mini)
    out: list[tuple[int, bytes]] = []
    for i in range(len(data)):
        out += f.feed(data[i : i + 1])
    assert out == MSGS
    assert out == Framer(mini).feed(data)
    assert f.buffered == 0


def test_full_header_records_last_serial() -> None:
    f = Framer(mini=False)
    f.feed(_stream(False)[:-1])
    assert f.last_serial == len(MSGS) - 1
    f.feed(_stream(False)[-1:])
    assert f.last_serial == len(MSGS)


@pytest.mark.parametrize("mini", [True, False], ids=["mini", "full"])
def test_partial_message_stays_buffered(mini: bool) -> None:
    hsize = 6 if mini else 18
    data = _stream(mini, [(5, b"abcdef")])
    f = Framer(mini)
    assert f.feed(data[: hsize + 3]) == []
    assert f.buffered == hsize + 3
    assert f.feed(data[hsize + 3 :]) == [(5, b"abcdef")]
    assert f.buffered == 0


@settings(max_examples=150, deadline=None)
@given(
    mini=st.booleans(),
    msgs=st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=12),
    data=st.data(),
)
def test_random_split_points(mini: bool, msgs: list[tuple[int, bytes]], data: st.DataObject) -> None:
    stream = _stream(mini, msgs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    f = Framer(mini)
    assert _feed_in_chunks(f, stream, cuts) == msgs
    assert f.buffered == 0


@pytest.mark.parametrize("mini", [True, False], ids=["mini", "full"])
def test_oversized_size_raises_before_body(mini: bool) -> None:
    limit = 100
    header = struct.pack("<HI", 7, limit + 1) if mini else struct.pack("<QHII", 1, 7, limit + 1, 0)
    f = Framer(mini, max_body=limit)
    assert f.feed(header[:-1]) == []  # header not complete yet: nothing to judge
    with pytest.raises(WireError):
        f.feed(header[-1:])  # no body byte has arrived


@pytest.mark.parametrize("mini", [True, False], ids=["mini", "full"])
def test_size_at_limit_is_accepted(mini: bool) -> None:
    limit = 100
    f = Framer(mini, max_body=limit)
    assert f.feed(_stream(mini, [(9, b"z" * limit)])) == [(9, b"z" * limit)]


def test_huge_size_after_good_messages_raises() -> None:
    f = Framer(mini=True)
    with pytest.raises(WireError):
        f.feed(_stream(True, [(1, b"ok")]) + struct.pack("<HI", 2, 0xFFFFFFFF))


def test_default_limit_is_finite() -> None:
    f = Framer(mini=True)
    with pytest.raises(WireError):
        f.feed(struct.pack("<HI", 1, 0xFFFFFFFF))


def test_header_writer_full_serials_start_at_one() -> None:
    hw = HeaderWriter(mini=False)
    assert hw.size == 18
    serials = []
    for i in range(5):
        h = hw.header(100 + i, i * 3)
        assert len(h) == 18
        serial, t, size, sub_list = struct.unpack("<QHII", h)
        assert (t, size, sub_list) == (100 + i, i * 3, 0)
        serials.append(serial)
    assert serials == [1, 2, 3, 4, 5]


def test_header_writer_mini() -> None:
    hw = HeaderWriter(mini=True)
    assert hw.size == 6
    assert hw.header(304, 1234) == struct.pack("<HI", 304, 1234)
    assert hw.header(1, 0) == struct.pack("<HI", 1, 0)


@pytest.mark.parametrize("mini", [True, False], ids=["mini", "full"])
def test_frame_output_parses_back(mini: bool) -> None:
    hw = HeaderWriter(mini)
    blob = b"".join(hw.frame(t, body) for t, body in MSGS)
    assert len(blob) == sum(hw.size + len(b) for _, b in MSGS)
    # With the schema's header layout ...
    layout = messages.MINI_HEADER if mini else messages.FULL_HEADER
    pos = 0
    for n, (t, body) in enumerate(MSGS, start=1):
        hdr = decode(layout, blob[pos : pos + layout.size])
        assert (hdr["type"], hdr["size"]) == (t, len(body))
        if not mini:
            assert hdr["serial"] == n
        pos += layout.size
        assert blob[pos : pos + len(body)] == body
        pos += len(body)
    assert pos == len(blob)
    # ... and with the framer.
    f = Framer(mini)
    assert f.feed(blob) == MSGS
    if not mini:
        assert f.last_serial == len(MSGS)
