"""The sans-IO server link stage, driven with the bytes a real SPICE client sends."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spice_twisted.wire.caps import caps_to_words, pack_words, unpack_words, words_to_caps
from spice_twisted.wire.enums import AuthMechanism, ChannelType, CommonCap, DisplayCap, LinkError, MainCap
from spice_twisted.wire.link import (
    IllegalTransition,
    LinkDone,
    LinkFailed,
    LinkRequest,
    LinkRequested,
    ServerLink,
    State,
    TicketReceived,
    error_reply,
)
from spice_twisted.wire.messages import LINK_HEADER, LINK_MESS, LINK_REPLY
from spice_twisted.wire.schema import decode, encode
from spice_twisted.wire.ticket import LinkKey, encrypt_ticket

CLIENT_COMMON = frozenset({CommonCap.AUTH_SELECTION, CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER})
SERVER_COMMON = frozenset({CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER})
SERVER_MAIN = frozenset({MainCap.SEMI_SEAMLESS_MIGRATE, MainCap.NAME_AND_UUID, MainCap.AGENT_CONNECTED_TOKENS})
REPLY_SIZE = 178


def _words(bits: frozenset[int] | set[int]) -> list[int]:
    # Independent of spice_twisted.wire.caps on purpose.
    if not bits:
        return []
    words = [0] * (max(bits) // 32 + 1)
    for b in bits:
        words[b // 32] |= 1 << (b % 32)
    return words


def _bits(words: list[int]) -> frozenset[int]:
    return frozenset(32 * i + b for i, w in enumerate(words) for b in range(32) if w & (1 << b))


def client_hello(
    common: frozenset[int] = CLIENT_COMMON,
    channel: frozenset[int] = frozenset(),
    *,
    channel_type: int = ChannelType.MAIN,
    channel_id: int = 0,
    connection_id: int = 0,
    magic: bytes = b"REDQ",
    major: int = 2,
    minor: int = 2,
    size: int | None = None,
    num_common: int | None = None,
    num_channel: int | None = None,
    caps_offset: int = 18,
    pad: bytes = b"",
) -> bytes:
    """Link header + link message + caps words, as spice-gtk sends them."""
    cw, hw = _words(frozenset(common)), _words(frozenset(channel))
    mess = encode(
        LINK_MESS,
        {
            "connection_id": connection_id,
            "channel_type": channel_type,
            "channel_id": channel_id,
            "num_common_caps": len(cw) if num_common is None else num_common,
            "num_channel_caps": len(hw) if num_channel is None else num_channel,
            "caps_offset": caps_offset,
        },
    )
    mess += pad + struct.pack(f"<{len(cw) + len(hw)}I", *(cw + hw))
    hdr = encode(LINK_HEADER, {"magic": magic, "major": major, "minor": minor, "size": len(mess) if size is None else size})
    return hdr + mess


def parse_reply(data: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    hdr = decode(LINK_HEADER, data[:16])
    body = data[16:]
    assert hdr["size"] == len(body)
    return hdr, decode(LINK_REPLY, body), body


def assert_error_reply(data: bytes, error: LinkError) -> None:
    assert len(data) == 16 + REPLY_SIZE
    hdr, reply, _ = parse_reply(data)
    assert (hdr["magic"], hdr["major"], hdr["minor"], hdr["size"]) == (b"REDQ", 2, 2, REPLY_SIZE)
    assert reply == {"error": error, "pub_key": bytes(162), "num_common_caps": 0, "num_channel_caps": 0, "caps_offset": 0}


@pytest.fixture(scope="module")
def key() -> LinkKey:
    return LinkKey()


@pytest.fixture(scope="module")
def ticket(key: LinkKey) -> bytes:
    return encrypt_ticket(key.public_der, b"secret")


def _feed(link: ServerLink, data: bytes, bytewise: bool) -> list[Any]:
    if not bytewise:
        return link.receive_data(data)
    events: list[Any] = []
    for i in range(len(data)):
        events += link.receive_data(data[i : i + 1])
    return events


# --- happy path -----------------------------------------------------------------------------------


def _run_happy(key: LinkKey, ticket: bytes, bytewise: bool, leftover: bytes = b"") -> tuple[list[Any], bytes, bytes]:
    link = ServerLink()
    events = _feed(link, client_hello(channel=frozenset({MainCap.NAME_AND_UUID}), connection_id=0x1234), bytewise)
    assert link.state is State.DECIDING
    reply, more = link.accept(key.public_der, SERVER_COMMON, SERVER_MAIN)
    events += more
    events += _feed(link, struct.pack("<I", AuthMechanism.SPICE) + ticket + leftover, bytewise)
    assert link.state is State.CHECKING
    result, done = link.result(LinkError.OK)
    events.append(done)
    assert link.state is State.DONE
    return events, reply, result


@pytest.mark.parametrize("bytewise", [False, True], ids=["blob", "bytewise"])
def test_happy_path(key: LinkKey, ticket: bytes, bytewise: bool) -> None:
    events, _, result = _run_happy(key, ticket, bytewise)
    request = LinkRequest(0x1234, ChannelType.MAIN, 0, CLIENT_COMMON, frozenset({MainCap.NAME_AND_UUID}))
    assert events == [LinkRequested(request), TicketReceived(ticket), LinkDone(b"", True)]
    assert result == b"\x00\x00\x00\x00"
    assert key.decrypt_ticket(events[1].encrypted) == b"secret"
    assert request.known_channel is ChannelType.MAIN


def test_bytewise_and_blob_give_the_same_events(key: LinkKey, ticket: bytes) -> None:
    a = _run_happy(key, ticket, bytewise=False, leftover=b"early channel data")
    b = _run_happy(key, ticket, bytewise=True, leftover=b"early channel data")
    assert a == b


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_splits_give_the_same_events(key: LinkKey, ticket: bytes, data: st.DataObject) -> None:
    hello = client_hello(channel=frozenset({MainCap.NAME_AND_UUID}))
    rest = struct.pack("<I", AuthMechanism.SPICE) + ticket + b"tail"
    link = ServerLink()
    events: list[Any] = []
    for blob in (hello, rest):
        cuts = sorted(set(data.draw(st.lists(st.integers(1, len(blob) - 1), max_size=8))))
        for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True):
            events += link.receive_data(blob[a:b])
        if blob is hello:
            events += link.accept(b"k" * 162, SERVER_COMMON, frozenset())[1]
    assert [type(e) for e in events] == [LinkRequested, TicketReceived]
    assert events[1].encrypted == ticket
    assert link.result(LinkError.OK)[1] == LinkDone(b"tail", True)


def test_reply_layout(key: LinkKey) -> None:
    link = ServerLink()
    link.receive_data(client_hello())
    channel_caps = frozenset({DisplayCap.SIZED_STREAM, DisplayCap.CODEC_MJPEG, 40})  # 40 forces a second word
    reply, events = link.accept(key.public_der, SERVER_COMMON, channel_caps)
    assert events == []
    hdr, body, raw = parse_reply(reply)
    nwords = len(_words(SERVER_COMMON)) + len(_words(channel_caps))
    assert nwords == 3
    assert (hdr["magic"], hdr["major"], hdr["minor"]) == (b"REDQ", 2, 2)
    assert hdr["size"] == REPLY_SIZE + 4 * nwords
    assert body["error"] == LinkError.OK
    assert body["pub_key"] == key.public_der
    assert len(body["pub_key"]) == 162
    assert body["caps_offset"] == REPLY_SIZE
    assert (body["num_common_caps"], body["num_channel_caps"]) == (1, 2)
    words = list(struct.unpack_from(f"<{nwords}I", raw, REPLY_SIZE))
    assert _bits(words[:1]) == SERVER_COMMON
    assert _bits(words[1:]) == channel_caps


def test_reply_without_caps(key: LinkKey) -> None:
    link = ServerLink()
    link.receive_data(client_hello())
    reply, _ = link.accept(key.public_der, frozenset(), frozenset())
    hdr, body, _ = parse_reply(reply)
    assert hdr["size"] == REPLY_SIZE
    assert (body["num_common_caps"], body["num_channel_caps"], body["caps_offset"]) == (0, 0, REPLY_SIZE)


@pytest.mark.parametrize("client_mini", [True, False])
@pytest.mark.parametrize("server_mini", [True, False])
def test_mini_header_only_when_both_advertise(ticket: bytes, client_mini: bool, server_mini: bool) -> None:
    client = {CommonCap.AUTH_SELECTION, CommonCap.AUTH_SPICE} | ({CommonCap.MINI_HEADER} if client_mini else set())
    server = {CommonCap.AUTH_SPICE} | ({CommonCap.MINI_HEADER} if server_mini else set())
    link = ServerLink()
    link.receive_data(client_hello(frozenset(client)))
    link.accept(b"\0" * 162, frozenset(server), frozenset())
    link.receive_data(struct.pack("<I", 1) + ticket)
    _, done = link.result(LinkError.OK)
    assert done is not None
    assert done.mini_header is (client_mini and server_mini)


def test_leftover_after_ticket_is_handed_over(ticket: bytes) -> None:
    link = ServerLink()
    link.receive_data(client_hello())
    link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    events = link.receive_data(struct.pack("<I", 1) + ticket + b"AB")
    assert events == [TicketReceived(ticket)]
    assert link.receive_data(b"CD") == []  # still checking: buffered
    _, done = link.result(LinkError.OK)
    assert done == LinkDone(b"ABCD", True)


def test_bytes_sent_before_accept_are_processed_on_accept(ticket: bytes) -> None:
    link = ServerLink()
    events = link.receive_data(client_hello() + struct.pack("<I", 1) + ticket + b"xyz")
    assert [type(e) for e in events] == [LinkRequested]
    _, events = link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    assert events == [TicketReceived(ticket)]
    assert link.result(LinkError.OK)[1] == LinkDone(b"xyz", True)


def test_client_without_auth_selection_sends_ticket_directly(ticket: bytes) -> None:
    link = ServerLink()
    common = frozenset({CommonCap.AUTH_SPICE})
    (ev,) = link.receive_data(client_hello(common, channel_type=ChannelType.DISPLAY, channel_id=1))
    assert ev.request == LinkRequest(0, ChannelType.DISPLAY, 1, common, frozenset())
    link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    assert link.state is State.TICKET
    assert link.receive_data(ticket[:100]) == []
    assert link.receive_data(ticket[100:]) == [TicketReceived(ticket)]
    assert link.result(LinkError.OK)[1] == LinkDone(b"", False)


def test_client_without_any_caps(ticket: bytes) -> None:
    link = ServerLink()
    (ev,) = link.receive_data(client_hello(frozenset()))
    assert ev.request.common_caps == frozenset() and ev.request.channel_caps == frozenset()
    link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    assert link.receive_data(ticket) == [TicketReceived(ticket)]


def test_caps_at_a_later_offset_and_minor_version(ticket: bytes) -> None:
    link = ServerLink()
    hello = client_hello(channel=frozenset({33}), caps_offset=18 + 6, pad=b"\xee" * 6, minor=1)
    (ev,) = link.receive_data(hello)
    assert ev.request.common_caps == CLIENT_COMMON
    assert ev.request.channel_caps == frozenset({33})


def test_unknown_channel_type_is_reported_not_failed() -> None:
    link = ServerLink()
    (ev,) = link.receive_data(client_hello(channel_type=200))
    assert isinstance(ev, LinkRequested)
    assert ev.request.channel_type == 200
    assert ev.request.known_channel is None


@pytest.mark.parametrize("size", [18, 4096])
def test_link_message_size_bounds_are_accepted(size: int) -> None:
    pad = b"\0" * (size - 18)
    link = ServerLink()
    hello = client_hello(frozenset(), size=size, pad=pad)
    assert link.receive_data(hello[:-1]) == []
    (ev,) = link.receive_data(hello[-1:])
    assert isinstance(ev, LinkRequested)


# --- failures -----------------------------------------------------------------------------------------


def _only_failure(events: list[Any], error: LinkError) -> LinkFailed:
    assert len(events) == 1
    (ev,) = events
    assert isinstance(ev, LinkFailed)
    assert ev.error == error
    assert ev.reason
    return ev


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"magic": b"REDX"}, LinkError.INVALID_MAGIC),
        ({"magic": b"\0\0\0\0"}, LinkError.INVALID_MAGIC),
        ({"major": 1}, LinkError.VERSION_MISMATCH),
        ({"major": 3}, LinkError.VERSION_MISMATCH),
        ({"size": 17}, LinkError.INVALID_DATA),
        ({"size": 0}, LinkError.INVALID_DATA),
        ({"size": 4097}, LinkError.INVALID_DATA),
        ({"size": 0xFFFFFFFF}, LinkError.INVALID_DATA),
    ],
    ids=["magic", "zero-magic", "major1", "major3", "size17", "size0", "size4097", "size-huge"],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["blob", "bytewise"])
def test_bad_header_fails_on_the_header_alone(kwargs: dict[str, Any], error: LinkError, bytewise: bool) -> None:
    link = ServerLink()
    header = client_hello(**kwargs)[:16]
    events = _feed(link, header, bytewise)
    ev = _only_failure(events, error)
    assert_error_reply(ev.reply, error)
    assert link.state is State.FAILED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_common": 1025},
        {"num_common": 1000, "num_channel": 25},
        {"num_common": 0xFFFFFFFF, "num_channel": 0xFFFFFFFF},
        {"num_channel": 0xFFFFFFFF},
        {"caps_offset": 0xFFFFFFFF},
        {"caps_offset": 17},
        {"caps_offset": 0},
        {"caps_offset": 18 + 4},  # one word past the last one
        {"num_common": 3},  # more words than the message holds
    ],
    ids=["common1025", "sum1025", "both-huge", "channel-huge", "offset-huge", "offset17", "offset0", "offset-past", "count-past"],
)
def test_bad_caps_are_invalid_data(kwargs: dict[str, Any]) -> None:
    link = ServerLink()
    hello = client_hello(frozenset({CommonCap.AUTH_SPICE}), frozenset({1}), **kwargs)
    ev = _only_failure(link.receive_data(hello), LinkError.INVALID_DATA)
    assert_error_reply(ev.reply, LinkError.INVALID_DATA)


def test_caps_too_many_words_even_if_present() -> None:
    link = ServerLink()
    words = frozenset(range(0, 32 * 1025, 32))  # 1025 words, all present in the message
    hello = client_hello(words, size=None)
    # The message is then > 4096 bytes: the header alone already fails.
    assert len(hello) - 16 > 4096
    _only_failure(link.receive_data(hello), LinkError.INVALID_DATA)


@pytest.mark.parametrize("mech", [AuthMechanism.SASL, 0, 3, 0xFFFFFFFF])
@pytest.mark.parametrize("bytewise", [False, True], ids=["blob", "bytewise"])
def test_unsupported_auth_mechanism_gets_a_result_not_a_reply(mech: int, bytewise: bool) -> None:
    link = ServerLink()
    link.receive_data(client_hello())
    link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    ev = _only_failure(_feed(link, struct.pack("<I", mech), bytewise), LinkError.INVALID_DATA)
    assert ev.reply == struct.pack("<I", LinkError.INVALID_DATA)
    assert link.state is State.FAILED
    with pytest.raises(IllegalTransition):
        link.receive_data(b"more")


@pytest.mark.parametrize("error", list(LinkError))
def test_error_reply(error: LinkError) -> None:
    data = error_reply(error)
    assert len(data) == 16 + 178
    assert_error_reply(data, error)


def test_reject(key: LinkKey) -> None:
    link = ServerLink()
    link.receive_data(client_hello(channel_type=ChannelType.PLAYBACK))
    out = link.reject(LinkError.CHANNEL_NOT_AVAILABLE)
    assert_error_reply(out, LinkError.CHANNEL_NOT_AVAILABLE)
    assert struct.unpack_from("<I", out, 16)[0] == 9
    assert link.state is State.FAILED
    with pytest.raises(IllegalTransition):
        link.receive_data(b"x")
    with pytest.raises(IllegalTransition):
        link.accept(key.public_der, SERVER_COMMON, frozenset())


def test_result_permission_denied(ticket: bytes) -> None:
    link = ServerLink()
    link.receive_data(client_hello())
    link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    link.receive_data(struct.pack("<I", 1) + ticket + b"leftover")
    out, done = link.result(LinkError.PERMISSION_DENIED)
    assert out == b"\x07\x00\x00\x00"
    assert done is None
    assert link.state is State.FAILED
    with pytest.raises(IllegalTransition):
        link.result(LinkError.OK)
    with pytest.raises(IllegalTransition):
        link.receive_data(b"x")


def test_illegal_transitions(ticket: bytes) -> None:
    pub = b"\0" * 162
    fresh = ServerLink()
    with pytest.raises(IllegalTransition):
        fresh.accept(pub, SERVER_COMMON, frozenset())
    with pytest.raises(IllegalTransition):
        fresh.result(LinkError.OK)
    with pytest.raises(IllegalTransition):
        fresh.reject(LinkError.ERROR)

    deciding = ServerLink()
    deciding.receive_data(client_hello())
    with pytest.raises(IllegalTransition):
        deciding.result(LinkError.OK)

    waiting = ServerLink()
    waiting.receive_data(client_hello())
    waiting.accept(pub, SERVER_COMMON, frozenset())
    for call in (
        lambda: waiting.accept(pub, SERVER_COMMON, frozenset()),
        lambda: waiting.reject(LinkError.ERROR),
        lambda: waiting.result(LinkError.OK),
    ):
        with pytest.raises(IllegalTransition):
            call()

    done = ServerLink()
    done.receive_data(client_hello())
    done.accept(pub, SERVER_COMMON, frozenset())
    done.receive_data(struct.pack("<I", 1) + ticket)
    done.result(LinkError.OK)
    with pytest.raises(IllegalTransition):
        done.result(LinkError.OK)
    with pytest.raises(IllegalTransition):
        done.receive_data(b"data")


# --- fuzzing -------------------------------------------------------------------------------------------


def _fuzz(link: ServerLink, chunks: list[bytes], allowed: tuple[type, ...]) -> list[Any]:
    events: list[Any] = []
    for chunk in chunks:
        if link.state in (State.FAILED, State.DECIDING, State.CHECKING):
            break
        events += link.receive_data(chunk)
    assert all(isinstance(e, allowed) for e in events)
    assert len(events) <= 1
    return events


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    events = _fuzz(ServerLink(), chunks, (LinkFailed, LinkRequested))
    for ev in events:
        if isinstance(ev, LinkFailed):
            assert_error_reply(ev.reply, ev.error)


@settings(max_examples=300, deadline=None)
@given(
    size=st.one_of(st.none(), st.integers(0, 4200), st.integers(0, 0xFFFFFFFF)),
    body=st.binary(max_size=300),
    fields=st.tuples(*(st.integers(0, 0xFFFFFFFF) for _ in range(3))),
)
def test_arbitrary_link_messages_never_raise(size: int | None, body: bytes, fields: tuple[int, int, int]) -> None:
    # A valid header in front of a random (or randomly described) link message.
    ncommon, nchan, off = fields
    mess = struct.pack("<IBBIII", 0, 1, 0, ncommon % 2000, nchan % 3, off % 400) + body
    header = encode(LINK_HEADER, {"magic": b"REDQ", "major": 2, "minor": 2, "size": len(mess) if size is None else size})
    link = ServerLink()
    events = _fuzz(link, [header, mess, b"\0" * 4200], (LinkFailed, LinkRequested))
    for ev in events:
        if isinstance(ev, LinkFailed):
            assert ev.error == LinkError.INVALID_DATA
            assert_error_reply(ev.reply, ev.error)


@settings(max_examples=200, deadline=None)
@given(common=st.frozensets(st.integers(0, 3)), chunks=st.lists(st.binary(max_size=200), max_size=5))
def test_arbitrary_bytes_after_accept_never_raise(common: frozenset[int], chunks: list[bytes]) -> None:
    link = ServerLink()
    link.receive_data(client_hello(common))
    link.accept(b"\0" * 162, SERVER_COMMON, frozenset())
    for ev in _fuzz(link, chunks, (LinkFailed, TicketReceived)):
        if isinstance(ev, LinkFailed):
            assert ev.reply == struct.pack("<I", ev.error)
        else:
            assert len(ev.encrypted) == 128


# --- capability words ----------------------------------------------------------------------------------


def test_caps_words_known_values() -> None:
    assert caps_to_words([]) == []
    assert caps_to_words([0, 3]) == [0b1001]
    assert caps_to_words([33]) == [0, 2]
    assert words_to_caps([0b1001, 0, 1 << 31]) == frozenset({0, 3, 95})
    assert pack_words([1, 0xFFFFFFFF]) == b"\x01\x00\x00\x00\xff\xff\xff\xff"
    assert unpack_words(b"\x01\x00\x00\x00\xff\xff\xff\xffjunk", 2) == [1, 0xFFFFFFFF]


@settings(max_examples=100, deadline=None)
@given(bits=st.frozensets(st.integers(0, 300)))
def test_caps_words_round_trip(bits: frozenset[int]) -> None:
    words = caps_to_words(bits)
    assert words == _words(bits)
    assert words_to_caps(words) == bits
    assert unpack_words(pack_words(words), len(words)) == words
