"""Data-message framing after the link stage: mini (6-byte) or full (18-byte) headers.

`Framer.feed` accepts bytes in any split (byte by byte, or many messages in one
read) and returns whole messages; `HeaderWriter` builds outgoing headers and keeps
the full header's serial. Sans-IO: nothing here touches a socket.
"""

from __future__ import annotations

import struct

from .schema import WireError

_FULL = struct.Struct("<QHII")
_MINI = struct.Struct("<HI")

DEFAULT_MAX_CLIENT_BODY = 1 << 20  # no client message we accept is near this


class MessageTooLarge(WireError):
    """A header claimed a body over the limit for its type: refused before buffering it."""


class Framer:
    """Reassembles (type, body) pairs from a byte stream.

    A body is limited to `max_body`, or to `type_limits[type]` for the types listed there;
    the limit is checked on the header, before any of the body is kept.
    """

    def __init__(self, mini: bool, max_body: int = DEFAULT_MAX_CLIENT_BODY, type_limits: dict[int, int] | None = None) -> None:
        self.mini = mini
        self.max_body = max_body
        self.type_limits = type_limits or {}
        self._hdr = _MINI if mini else _FULL
        self._buf = bytearray()
        self.last_serial = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def discard(self) -> None:
        """Drop an unfinished message (the connection is closing): its memory goes now,
        not whenever the garbage collector finds the closed connection's objects."""
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        hsize = self._hdr.size
        pos = 0
        buf = self._buf
        while len(buf) - pos >= hsize:
            if self.mini:
                msg_type, size = self._hdr.unpack_from(buf, pos)
            else:
                serial, msg_type, size, _sub_list = self._hdr.unpack_from(buf, pos)
            limit = self.type_limits.get(msg_type, self.max_body)
            if size > limit:
                raise MessageTooLarge(f"message type {msg_type} claims {size} bytes (limit {limit})")
            if len(buf) - pos - hsize < size:
                break
            if not self.mini:
                self.last_serial = serial
            start = pos + hsize
            out.append((msg_type, bytes(buf[start : start + size])))
            pos = start + size
        if pos:
            del buf[:pos]
        return out


class HeaderWriter:
    """Builds headers for outgoing messages; full headers number them from 1."""

    def __init__(self, mini: bool) -> None:
        self.mini = mini
        self.serial = 0

    @property
    def size(self) -> int:
        return _MINI.size if self.mini else _FULL.size

    def header(self, msg_type: int, body_size: int) -> bytes:
        if self.mini:
            return _MINI.pack(msg_type, body_size)
        self.serial += 1
        return _FULL.pack(self.serial, msg_type, body_size, 0)

    def frame(self, msg_type: int, body: bytes) -> bytes:
        return self.header(msg_type, len(body)) + body
