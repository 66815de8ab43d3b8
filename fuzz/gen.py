"""Input generation shared by the fuzz harness (atheris or plain random) and the
hypothesis tests: one `Chooser` interface over three sources of choices, and builders
of hostile client byte streams from the message schema itself.

A stream is a run of frames, each one of: a valid message of the channel (random
field values, biased to the extremes), a valid message with extra bytes after it, a
truncated one, one whose header claims more than any limit, a message of another
channel, an unknown type, or garbage; then split at random points for delivery.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any, Protocol

from spice_twisted.wire.enums import ChannelType
from spice_twisted.wire.messages import CLIENT, Message, encode_body
from spice_twisted.wire.schema import Array, CountedBy, FixedBytes, Ptr, Rest, Scalar, SizedBytes, Struct, Switch, Type


class Chooser(Protocol):
    def int(self, lo: int, hi: int) -> int: ...
    def bytes(self, max_len: int) -> bytes: ...


class RandomChooser:
    """Choices from random.Random (the fallback engine, and reproducible by seed)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def bytes(self, max_len: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_len))


class BytesChooser:
    """Choices read from one input buffer (what atheris or a saved crash file gives):
    every choice consumes bytes; once they run out, choices are the smallest."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        nbytes = (span.bit_length() + 7) // 8
        raw = self._take(nbytes)
        return lo + (int.from_bytes(raw.ljust(nbytes, b"\0"), "little") % (span + 1))

    def bytes(self, max_len: int) -> bytes:
        return self._take(self.int(0, max_len))

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)


class DrawChooser:
    """Choices drawn from hypothesis (`st.data()`), so failures shrink."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def bytes(self, max_len: int) -> bytes:
        return self.data.draw(self.st.binary(max_size=max_len))


# --- values from the schema -----------------------------------------------------------------
_RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF), "Q": (0, 2**64 - 1), "h": (-(2**15), 2**15 - 1)}
_RANGES.update({"i": (-(2**31), 2**31 - 1), "q": (-(2**63), 2**63 - 1), "b": (-128, 127)})


def scalar_value(ch: Chooser, t: Scalar) -> int:
    lo, hi = _RANGES[t.st.format[-1]]
    pick = ch.int(0, 5)
    if pick == 0:
        return lo
    if pick == 1:
        return hi
    if pick == 2:
        return ch.int(0, min(hi, 8))  # small: real enum values and counts
    if pick == 3:
        return max(lo, min(hi, ch.int(-1, 1) + (hi // 2)))
    return ch.int(lo, hi)


def value_for(ch: Chooser, t: Type, depth: int = 0) -> Any:
    """A random value the encoder accepts for layout `t` (valid, and often hostile)."""
    if isinstance(t, Scalar):
        return scalar_value(ch, t)
    if isinstance(t, FixedBytes):
        return ch.bytes(t.size).ljust(t.size, b"\0")[: t.size]
    if isinstance(t, (Rest, SizedBytes)):
        return ch.bytes(64 if ch.int(0, 3) else 1024)
    if isinstance(t, Array):
        return [value_for(ch, t.item, depth + 1) for _ in range(ch.int(0, 8))]
    if isinstance(t, Ptr):
        return None if depth > 2 or ch.int(0, 1) else value_for(ch, t.target, depth + 1)
    if isinstance(t, Struct):
        out: dict[str, Any] = {}
        for name, ft in t.fields:
            if isinstance(ft, Switch):
                case = ft.cases.get(int(out.get(ft.tag, 0))) or ft.default or []
                out.update(value_for(ch, Struct("case", case), depth + 1))
            elif isinstance(ft, CountedBy):
                out[name] = [value_for(ch, ft.item, depth + 1) for _ in range(int(out.get(ft.count_field, 0)))]
            else:
                out[name] = value_for(ch, ft, depth)
        return out
    raise TypeError(f"no generator for {type(t).__name__}")


def client_messages(channel: ChannelType) -> list[Message]:
    """Every message a client may send on `channel`: its own and the common ones."""
    return [m for (c, _), m in sorted(CLIENT.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])) if c is None or c == channel]


def other_channel_messages(channel: ChannelType) -> list[Message]:
    return [m for (c, _), m in CLIENT.items() if c is not None and c != channel]


def valid_body(ch: Chooser, msg: Message) -> bytes:
    for _ in range(4):
        try:
            return encode_body(msg, value_for(ch, msg.layout))
        except Exception:  # noqa: BLE001  (a CountedBy whose count was too large to build)
            continue
    return b""


def header(mini: bool, msg_type: int, size: int, ch: Chooser) -> bytes:
    if mini:
        return struct.pack("<HI", msg_type & 0xFFFF, size & 0xFFFFFFFF)
    serial = ch.int(0, 2**64 - 1) if ch.int(0, 7) == 0 else 1
    sub_list = ch.int(0, 0xFFFFFFFF) if ch.int(0, 7) == 0 else 0
    return struct.pack("<QHII", serial, msg_type & 0xFFFF, size & 0xFFFFFFFF, sub_list)


FRAME_KINDS = ("valid", "valid", "valid", "extra", "truncated", "oversized", "wrong-channel", "unknown", "garbage")


def frame(ch: Chooser, channel: ChannelType, mini: bool, kinds: tuple[str, ...] = FRAME_KINDS) -> bytes:
    kind = kinds[ch.int(0, len(kinds) - 1)]
    own = client_messages(channel)
    if kind in ("valid", "extra", "truncated", "oversized"):
        msg = own[ch.int(0, len(own) - 1)]
        body = valid_body(ch, msg)
        if kind == "extra":
            body += ch.bytes(32)
        if kind == "truncated":
            cut = ch.int(0, len(body))
            if ch.int(0, 1):  # the header tells the truth: the stream just stops
                return header(mini, msg.id, len(body), ch) + body[:cut]
            return header(mini, msg.id, cut, ch) + body[:cut]  # the body is too short for its layout
        if kind == "oversized":
            return header(mini, msg.id, ch.int(1 << 16, 0xFFFFFFFF), ch) + ch.bytes(64)
        return header(mini, msg.id, len(body), ch) + body
    if kind == "wrong-channel":
        others = other_channel_messages(channel)
        msg = others[ch.int(0, len(others) - 1)]
        body = valid_body(ch, msg)
        return header(mini, msg.id, len(body), ch) + body
    if kind == "unknown":
        body = ch.bytes(16)
        return header(mini, ch.int(0, 0xFFFF), len(body), ch) + body
    return ch.bytes(64)


def stream(ch: Chooser, channel: ChannelType, mini: bool, max_frames: int = 8, kinds: tuple[str, ...] = FRAME_KINDS) -> bytes:
    return b"".join(frame(ch, channel, mini, kinds) for _ in range(ch.int(1, max_frames)))


def split(ch: Chooser, data: bytes, max_pieces: int = 6) -> list[bytes]:
    """`data` cut at random points (each piece may be empty: a read of nothing never happens,
    so empty pieces are dropped)."""
    cuts = sorted({ch.int(0, len(data)) for _ in range(ch.int(0, max_pieces))})
    pieces, last = [], 0
    for c in cuts + [len(data)]:
        if c > last:
            pieces.append(data[last:c])
            last = c
    return pieces


def run_guarded(fn: Callable[[], None], allowed: tuple[type[BaseException], ...]) -> None:
    """Call fn; exceptions in `allowed` are expected results, anything else propagates."""
    try:
        fn()
    except allowed:
        pass
