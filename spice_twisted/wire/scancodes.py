"""PC XT (set 1) scancode bytes <-> key events.

KEY_DOWN/KEY_UP carry the bytes packed little-endian in a u32 (E0 1D = Right
Ctrl is 0x1DE0); KEY_SCANCODE carries them raw, possibly press and release back
to back. A key is reported as its scancode with 0x100 added for E0-prefixed
(extended) keys, which is also how spice-gtk's API numbers keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

EXTENDED = 0x100
PAUSE = 0x145  # the E1 1D 45 sequence, reported as one key


class KeyEvent(NamedTuple):
    key: int
    pressed: bool


def code_bytes(code: int) -> bytes:
    """The bytes of a KEY_DOWN/KEY_UP code, low to high, up to the first zero byte."""
    raw = (code & 0xFFFFFFFF).to_bytes(4, "little")
    return raw.split(b"\0", 1)[0]


def decode_scancodes(data: bytes) -> list[KeyEvent]:
    return list(iter_scancodes(data))


def iter_scancodes(data: bytes) -> Iterator[KeyEvent]:
    """The events in `data` one at a time (a 1 MiB message is a million of them)."""
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0xE1:  # Pause: E1 1D 45 (press) E1 9D C5 (release)
            if i + 2 < len(data):
                yield KeyEvent(PAUSE, not data[i + 1] & 0x80)
            i += 3
            continue
        if b == 0xE0:
            if i + 1 >= len(data):
                break  # a dangling prefix: nothing to report
            b = data[i + 1]
            yield KeyEvent(EXTENDED | (b & 0x7F), not b & 0x80)
            i += 2
            continue
        yield KeyEvent(b & 0x7F, not b & 0x80)
        i += 1


def encode_key(key: int, pressed: bool) -> int:
    """A KEY_DOWN/KEY_UP code for a key (what a client sends; used by test clients)."""
    code = (key & 0x7F) | (0 if pressed else 0x80)
    return 0xE0 | (code << 8) if key & EXTENDED else code
