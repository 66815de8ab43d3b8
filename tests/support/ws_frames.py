"""Client-side WebSocket frames built by hand (RFC 6455 5.2), for the tests that send what a
library would not: lengths that lie, fragments split anywhere, frames cut short."""

from __future__ import annotations

import struct

KEY = b"\x11\x22\x33\x44"


def masked_frame_head(opcode: int, length: int, fin: bool = True, key: bytes = KEY) -> bytes:
    """A client frame's header claiming `length` payload bytes, masked with `key`."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, 0x80 | length]) + key
    if length < 1 << 16:
        return bytes([first, 0x80 | 126]) + struct.pack("!H", length) + key
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", length) + key


def mask(data: bytes, key: bytes = KEY, offset: int = 0) -> bytes:
    """`data` masked with `key`, starting `offset` bytes into the frame's payload."""
    return bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))
