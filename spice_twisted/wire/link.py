"""The server side of the SPICE link stage as a sans-IO state machine.

Feed it bytes with `receive_data`; it returns events. The owner answers a
`LinkRequested` with `accept()` (or `reject(code)`), and a `TicketReceived` with
`result(code)`. Every malformed input becomes a `LinkFailed` event carrying the
link error code to send back (`error_reply`) before closing: the link never
raises on client bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from .caps import caps_to_words, pack_words, unpack_words, words_to_caps
from .enums import (
    SPICE_MAGIC,
    SPICE_VERSION_MAJOR,
    SPICE_VERSION_MINOR,
    TICKET_ENCRYPTED_BYTES,
    TICKET_PUBKEY_BYTES,
    AuthMechanism,
    ChannelType,
    CommonCap,
    LinkError,
)
from .messages import LINK_HEADER, LINK_MESS, LINK_REPLY
from .schema import decode, encode

LINK_MESS_MIN = LINK_MESS.size  # 18
LINK_MESS_MAX = 4096
MAX_CAPS_WORDS = 1024


@dataclass(frozen=True)
class LinkRequest:
    connection_id: int
    channel_type: int
    channel_id: int
    common_caps: frozenset[int]
    channel_caps: frozenset[int]

    @property
    def known_channel(self) -> ChannelType | None:
        try:
            return ChannelType(self.channel_type)
        except ValueError:
            return None


@dataclass(frozen=True)
class LinkRequested:
    request: LinkRequest


@dataclass(frozen=True)
class TicketReceived:
    encrypted: bytes


@dataclass(frozen=True)
class LinkFailed:
    """The link cannot go on; send `reply` (a link reply or a link result), then close."""

    error: LinkError
    reason: str
    reply: bytes


@dataclass(frozen=True)
class LinkDone:
    """The link succeeded; `leftover` is channel data the client already sent."""

    leftover: bytes
    mini_header: bool


Event = LinkRequested | TicketReceived | LinkFailed | LinkDone


class State(enum.Enum):
    HEADER = "header"
    MESS = "mess"
    DECIDING = "deciding"
    AUTH_MECH = "auth-mech"
    TICKET = "ticket"
    CHECKING = "checking"
    DONE = "done"
    FAILED = "failed"


class IllegalTransition(RuntimeError):
    """The owner called a method in a state where it makes no sense (a bug, not bad input)."""


def error_reply(error: LinkError) -> bytes:
    """A link header and a 178-byte reply, all zero but the error (what upstream sends)."""
    reply = encode(
        LINK_REPLY,
        {"error": error, "pub_key": bytes(TICKET_PUBKEY_BYTES), "num_common_caps": 0, "num_channel_caps": 0, "caps_offset": 0},
    )
    return _link_header(len(reply)) + reply


def _link_header(size: int) -> bytes:
    return encode(LINK_HEADER, {"magic": SPICE_MAGIC, "major": SPICE_VERSION_MAJOR, "minor": SPICE_VERSION_MINOR, "size": size})


@dataclass
class ServerLink:
    """One connection's link stage, server side."""

    state: State = State.HEADER
    request: LinkRequest | None = None
    server_common_caps: frozenset[int] = field(default_factory=frozenset)
    _buf: bytearray = field(default_factory=bytearray)
    _mess_size: int = 0

    def receive_data(self, data: bytes) -> list[Event]:
        if self.state in (State.DONE, State.FAILED):
            raise IllegalTransition(f"data after link {self.state.value}")
        self._buf += data
        return self._advance()

    def discard(self) -> None:
        """The connection is gone: drop whatever it had sent."""
        self._buf = bytearray()

    def _fail(self, error: LinkError, reason: str) -> list[Event]:
        # Before our reply the client waits for a reply; after it, for a 4-byte result.
        replied = self.state in (State.AUTH_MECH, State.TICKET, State.CHECKING)
        self.state = State.FAILED
        self._buf.clear()
        return [LinkFailed(error, reason, struct.pack("<I", error) if replied else error_reply(error))]

    def _advance(self) -> list[Event]:
        events: list[Event] = []
        while True:
            if self.state is State.HEADER:
                if len(self._buf) < LINK_HEADER.size:
                    return events
                hdr = decode(LINK_HEADER, bytes(self._buf[: LINK_HEADER.size]))
                if hdr["magic"] != SPICE_MAGIC:
                    return events + self._fail(LinkError.INVALID_MAGIC, f"bad magic {hdr['magic']!r}")
                if hdr["major"] != SPICE_VERSION_MAJOR:
                    return events + self._fail(LinkError.VERSION_MISMATCH, f"protocol {hdr['major']}.{hdr['minor']}")
                if not LINK_MESS_MIN <= hdr["size"] <= LINK_MESS_MAX:
                    return events + self._fail(LinkError.INVALID_DATA, f"link message size {hdr['size']}")
                self._mess_size = hdr["size"]
                del self._buf[: LINK_HEADER.size]
                self.state = State.MESS
            elif self.state is State.MESS:
                if len(self._buf) < self._mess_size:
                    return events
                raw = bytes(self._buf[: self._mess_size])
                del self._buf[: self._mess_size]
                mess = decode(LINK_MESS, raw)
                ncommon, nchan, off = mess["num_common_caps"], mess["num_channel_caps"], mess["caps_offset"]
                if ncommon + nchan > MAX_CAPS_WORDS:
                    return events + self._fail(LinkError.INVALID_DATA, f"{ncommon}+{nchan} capability words")
                if off < LINK_MESS_MIN or off + 4 * (ncommon + nchan) > len(raw):
                    return events + self._fail(LinkError.INVALID_DATA, f"capabilities at {off} outside the message")
                words = unpack_words(raw[off:], ncommon + nchan)
                self.request = LinkRequest(
                    mess["connection_id"],
                    mess["channel_type"],
                    mess["channel_id"],
                    words_to_caps(words[:ncommon]),
                    words_to_caps(words[ncommon:]),
                )
                self.state = State.DECIDING
                events.append(LinkRequested(self.request))
                return events
            elif self.state is State.AUTH_MECH:
                if len(self._buf) < 4:
                    return events
                (mech,) = struct.unpack_from("<I", self._buf)
                del self._buf[:4]
                if mech != AuthMechanism.SPICE:
                    return events + self._fail(LinkError.INVALID_DATA, f"auth mechanism {mech} not offered")
                self.state = State.TICKET
            elif self.state is State.TICKET:
                if len(self._buf) < TICKET_ENCRYPTED_BYTES:
                    return events
                ticket = bytes(self._buf[:TICKET_ENCRYPTED_BYTES])
                del self._buf[:TICKET_ENCRYPTED_BYTES]
                self.state = State.CHECKING
                events.append(TicketReceived(ticket))
                return events
            else:
                return events  # DECIDING / CHECKING: buffer until the owner answers

    def accept(self, public_key_der: bytes, common_caps: frozenset[int], channel_caps: frozenset[int]) -> tuple[bytes, list[Event]]:
        """Send our reply (public key and caps); then wait for the auth mechanism or ticket."""
        if self.state is not State.DECIDING or self.request is None:
            raise IllegalTransition(f"accept in state {self.state.value}")
        self.server_common_caps = frozenset(common_caps)
        cw, hw = caps_to_words(common_caps), caps_to_words(channel_caps)
        reply = encode(
            LINK_REPLY,
            {
                "error": LinkError.OK,
                "pub_key": public_key_der,
                "num_common_caps": len(cw),
                "num_channel_caps": len(hw),
                "caps_offset": LINK_REPLY.size,
            },
        ) + pack_words(cw + hw)
        client_selects = CommonCap.AUTH_SELECTION in self.request.common_caps
        self.state = State.AUTH_MECH if client_selects else State.TICKET
        return _link_header(len(reply)) + reply, self._advance()

    def reject(self, error: LinkError) -> bytes:
        """Refuse the link request itself (unknown channel, bad connection id, TLS policy)."""
        if self.state is not State.DECIDING:
            raise IllegalTransition(f"reject in state {self.state.value}")
        self.state = State.FAILED
        return error_reply(error)

    def result(self, error: LinkError) -> tuple[bytes, LinkDone | None]:
        """The 4-byte link result; on OK the link is done and hands over leftover bytes."""
        if self.state is not State.CHECKING or self.request is None:
            raise IllegalTransition(f"result in state {self.state.value}")
        out = struct.pack("<I", error)
        if error != LinkError.OK:
            self.state = State.FAILED
            return out, None
        self.state = State.DONE
        mini = CommonCap.MINI_HEADER in self.request.common_caps and CommonCap.MINI_HEADER in self.server_common_caps
        leftover = bytes(self._buf)
        self._buf.clear()
        return out, LinkDone(leftover, mini)
