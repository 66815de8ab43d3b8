"""The agent protocol, sans-IO (wire/agent.py): layouts, chunking and reassembly, token
flow control, and hostile input (hypothesis)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spice_twisted.wire.agent import (
    HEADER_SIZE,
    LAYOUTS,
    SMALL_MESSAGE,
    AgentError,
    AgentLink,
    AgentStream,
    caps_message,
    caps_of,
    chunks,
    decode_message,
    encode_message,
    header,
)
from spice_twisted.wire.enums import VD_AGENT_MAX_DATA_SIZE, AgentCap, AgentMsg
from spice_twisted.wire.schema import WireError

u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
SEL = st.fixed_dictionaries({"selection": st.integers(0, 255), "reserved": st.just(b"\0\0\0")})
MON = st.fixed_dictionaries({"height": u32, "width": u32, "depth": u32, "x": i32, "y": i32})


@st.composite
def monitors_config(draw: st.DrawFn) -> dict:
    mons = draw(st.lists(MON, max_size=4))
    return {"num_of_monitors": len(mons), "flags": draw(u32), "monitors": mons, "physical_sizes": draw(st.binary(max_size=16))}


FIELDS = {
    AgentMsg.MONITORS_CONFIG: monitors_config(),
    AgentMsg.REPLY: st.fixed_dictionaries({"type": u32, "error": u32}),
    AgentMsg.DISPLAY_CONFIG: st.fixed_dictionaries({"flags": u32, "depth": u32}),
    AgentMsg.ANNOUNCE_CAPABILITIES: st.fixed_dictionaries({"request": u32, "caps": st.lists(u32, max_size=4)}),
    AgentMsg.FILE_XFER_START: st.fixed_dictionaries({"id": u32, "data": st.binary(max_size=64)}),
    AgentMsg.FILE_XFER_STATUS: st.fixed_dictionaries({"id": u32, "result": u32, "data": st.binary(max_size=16)}),
    AgentMsg.CLIENT_DISCONNECTED: st.just({}),
    AgentMsg.MAX_CLIPBOARD: st.fixed_dictionaries({"max": i32}),
    AgentMsg.CLIPBOARD: st.fixed_dictionaries({"clip_type": u32, "data": st.binary(max_size=64)}),
    AgentMsg.CLIPBOARD_GRAB: st.fixed_dictionaries({"types": st.lists(u32, max_size=6)}),
    AgentMsg.CLIPBOARD_REQUEST: st.fixed_dictionaries({"clip_type": u32}),
    AgentMsg.CLIPBOARD_RELEASE: st.just({}),
}


@st.composite
def any_message(draw: st.DrawFn) -> tuple[AgentMsg, bool, dict]:
    kind, selection = draw(st.sampled_from(sorted(LAYOUTS)))
    fields = dict(draw(FIELDS[kind])) if kind != AgentMsg.FILE_XFER_DATA else {}
    if kind == AgentMsg.FILE_XFER_DATA:
        data = draw(st.binary(max_size=64))
        fields = {"id": draw(u32), "size": len(data), "data": data}
    if selection:
        fields.update(draw(SEL))
    return kind, selection, fields


@given(any_message())
def test_every_layout_round_trips(m: tuple[AgentMsg, bool, dict]) -> None:
    kind, selection, fields = m
    body = encode_message(kind, fields, selection)
    assert decode_message(kind, body, selection) == fields


def test_known_sizes_and_the_selection_prefix() -> None:
    assert HEADER_SIZE == 20
    assert header(AgentMsg.REPLY, 8) == struct.pack("<IIQI", 1, 3, 0, 8)
    assert encode_message(AgentMsg.CLIPBOARD_REQUEST, {"clip_type": 1}) == struct.pack("<I", 1)
    with_sel = encode_message(AgentMsg.CLIPBOARD_REQUEST, {"selection": 1, "clip_type": 1}, selection=True)
    assert with_sel == b"\x01\0\0\0" + struct.pack("<I", 1)
    assert encode_message(AgentMsg.CLIPBOARD_RELEASE, {"selection": 1}, selection=True) == b"\x01\0\0\0"
    # MONITORS_CONFIG as spice-gtk sends it: count, flags, 20-byte monitors, then mm sizes.
    body = struct.pack("<II", 1, 3) + struct.pack("<IIIii", 600, 800, 32, 0, 0) + struct.pack("<HH", 160, 210)
    got = decode_message(AgentMsg.MONITORS_CONFIG, body, False)
    assert got["monitors"] == [{"height": 600, "width": 800, "depth": 32, "x": 0, "y": 0}]
    caps = frozenset({AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.CLIPBOARD_SELECTION, AgentCap.FILE_XFER_DISABLED})
    assert caps_of(decode_message(AgentMsg.ANNOUNCE_CAPABILITIES, caps_message(caps, True), False)) == caps


@given(kind=st.sampled_from(sorted({k for k, _ in LAYOUTS})), selection=st.booleans(), body=st.binary(max_size=80))
def test_random_bodies_decode_or_raise_wire_error(kind: AgentMsg, selection: bool, body: bytes) -> None:
    try:
        decode_message(kind, body, selection)
    except WireError:
        pass


def test_file_xfer_data_must_carry_what_it_says() -> None:
    body = struct.pack("<IQ", 7, 10) + b"12345"
    with pytest.raises(WireError, match="says 10 bytes"):
        decode_message(AgentMsg.FILE_XFER_DATA, body, False)
    with pytest.raises(WireError, match="need 20000000 bytes"):  # a count the bytes cannot hold
        decode_message(AgentMsg.MONITORS_CONFIG, struct.pack("<II", 1000000, 0), False)


@given(
    kind=st.sampled_from([AgentMsg.CLIPBOARD, AgentMsg.FILE_XFER_DATA, AgentMsg.REPLY]),
    size=st.integers(0, 3 * VD_AGENT_MAX_DATA_SIZE + 50),
    cuts=st.lists(st.integers(1, VD_AGENT_MAX_DATA_SIZE), max_size=20),
)
def test_chunks_are_bounded_and_reassemble_however_cut(kind: AgentMsg, size: int, cuts: list[int]) -> None:
    data = bytes(i % 251 for i in range(size))
    pieces = chunks(kind, data, opaque=5)
    assert all(len(p) <= VD_AGENT_MAX_DATA_SIZE for p in pieces)
    assert pieces[0][:HEADER_SIZE] == header(kind, size, 5)
    assert len(pieces) == -(-(size + HEADER_SIZE) // VD_AGENT_MAX_DATA_SIZE)
    # A receiver sees one byte stream, however it is cut (a header may straddle two bodies).
    stream, whole, out = AgentStream(max_clipboard=1 << 20), b"".join(pieces) * 2, []
    if kind == AgentMsg.REPLY and size > SMALL_MESSAGE:  # over its type's bound: refused at the header
        with pytest.raises(AgentError, match=f"of {size} bytes"):
            stream.feed(pieces[0])
        return
    pos = 0
    for n in [*cuts, VD_AGENT_MAX_DATA_SIZE] * 100:
        if pos >= len(whole):
            break
        out += stream.feed(whole[pos : pos + n])
        pos += n
    assert [(m.type, m.opaque, m.data) for m in out] == [(kind, 5, data)] * 2
    assert stream.buffered == 0


def test_stream_refuses_lies_before_buffering() -> None:
    s = AgentStream(max_clipboard=1000)
    with pytest.raises(AgentError, match="of 1009 bytes"):
        s.feed(header(AgentMsg.CLIPBOARD, 1009))
    with pytest.raises(AgentError, match="of 4097 bytes"):
        AgentStream(1000).feed(header(AgentMsg.MONITORS_CONFIG, SMALL_MESSAGE + 1))
    with pytest.raises(AgentError, match="protocol 2"):
        AgentStream(1000).feed(struct.pack("<IIQI", 2, 3, 0, 0))
    with pytest.raises(AgentError, match="AGENT_DATA of 2049 bytes"):
        AgentStream(1000).feed(bytes(2049))


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=VD_AGENT_MAX_DATA_SIZE + 8), max_size=30))
def test_random_streams_are_bounded(bodies: list[bytes]) -> None:
    s = AgentStream(max_clipboard=5000)
    try:
        for b in bodies:
            for m in s.feed(b):
                assert len(m.data) <= s.limit(m.type)
            assert s.buffered <= max(5008, SMALL_MESSAGE, HEADER_SIZE)
    except AgentError:
        pass


def test_tokens_both_ways() -> None:
    link = AgentLink(grant=10, max_clipboard=1 << 20, max_queued=100_000)
    assert link.receive(header(AgentMsg.REPLY, 0)) == [] and link.stream.buffered == 0  # before AGENT_START: dropped
    link.credit(5)
    link.start(tokens=3)
    # We send only while the client's tokens last; AGENT_TOKEN refills them.
    link.send(AgentMsg.CLIPBOARD, bytes(5000))  # 3 chunks
    link.send(AgentMsg.REPLY, bytes(8))
    sent = [link.next_chunk() for _ in range(5)]
    assert [len(c) if c else None for c in sent] == [2048, 2048, 924, None, None]
    link.credit(1)
    assert link.next_chunk() == header(AgentMsg.REPLY, 8) + bytes(8)
    assert link.next_chunk() is None and not link.pending
    # The client spends our grant; we return it in batches of half the grant.
    returned = []
    for _ in range(10):
        link.receive(header(AgentMsg.REPLY, 0))
        returned.append(link.returned())
    assert returned == [0, 0, 0, 0, 5, 0, 0, 0, 0, 5]
    for _ in range(10):  # the ten tokens returned: ten more messages are fine
        link.receive(header(AgentMsg.REPLY, 0))
    with pytest.raises(AgentError, match="without a token"):  # (none returned this time)
        link.receive(header(AgentMsg.REPLY, 0))


def test_a_client_that_returns_no_tokens_fills_only_its_bounded_queue() -> None:
    link = AgentLink(grant=10, max_clipboard=1 << 20, max_queued=10_000)
    link.start(tokens=0)
    for _ in range(9):
        link.send(AgentMsg.CLIPBOARD, bytes(1000))
    assert link.next_chunk() is None
    with pytest.raises(AgentError, match="wait for the client's tokens"):
        link.send(AgentMsg.CLIPBOARD, bytes(1000))
    assert link.queued_bytes <= 10_000


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["send", "credit", "take"]), st.integers(0, 6000)), max_size=40))
def test_outgoing_queue_never_exceeds_its_bound_or_the_tokens(ops: list[tuple[str, int]]) -> None:
    link = AgentLink(grant=10, max_clipboard=1 << 20, max_queued=20_000)
    link.start(tokens=2)
    granted, taken, expect = 2, 0, b""
    got = b""
    for op, n in ops:
        if op == "send":
            try:
                link.send(AgentMsg.CLIPBOARD, bytes([n % 256]) * n)
                expect += header(AgentMsg.CLIPBOARD, n) + bytes([n % 256]) * n
            except AgentError:
                pass
        elif op == "credit":
            link.credit(n % 4)
            granted += n % 4
        else:
            c = link.next_chunk()
            if c is not None:
                taken += 1
                got += c
                assert len(c) <= VD_AGENT_MAX_DATA_SIZE
        assert link.queued_bytes <= 20_000
        assert taken <= granted
    while (c := link.next_chunk()) is not None:
        got += c
    assert expect.startswith(got)  # in order, nothing lost or duplicated


@given(head=st.binary(max_size=3000), tail=st.binary(max_size=6000))
def test_a_shared_tail_goes_out_as_if_joined(head: bytes, tail: bytes) -> None:
    link = AgentLink(grant=10, max_clipboard=1 << 20, max_queued=100_000)
    link.start(tokens=100)
    link.send(AgentMsg.CLIPBOARD, head, tail)
    got = b""
    while (c := link.next_chunk()) is not None:
        assert len(c) <= VD_AGENT_MAX_DATA_SIZE
        got += c
    assert got == header(AgentMsg.CLIPBOARD, len(head) + len(tail)) + head + tail
    assert link.queued_bytes == 0


def test_a_newer_message_of_the_same_key_replaces_a_waiting_one() -> None:
    """A flood of clipboard grabs waits as one per selection for a client without tokens."""
    link = AgentLink(grant=10, max_clipboard=1 << 20, max_queued=10_000)
    link.start(tokens=1)
    link.send(AgentMsg.CLIPBOARD, bytes(3000))  # starts going out: never replaced
    assert link.next_chunk() is not None
    for i in range(100_000):
        link.send(AgentMsg.CLIPBOARD_GRAB, struct.pack("<I", i), key=("owner", 0))
        link.send(AgentMsg.CLIPBOARD_GRAB, struct.pack("<I", i), key=("owner", 1))
    assert link.queued_bytes == (3000 + HEADER_SIZE - 2048) + 2 * (HEADER_SIZE + 4)
    link.credit(10)
    out = b"".join(iter(link.next_chunk, None))
    assert out.endswith(header(AgentMsg.CLIPBOARD_GRAB, 4) + struct.pack("<I", 99_999))
