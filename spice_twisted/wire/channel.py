"""The sans-IO core of one channel connection after the link: bytes in, typed events out.

It frames and decodes client messages, keeps the server's message serials, does the
ACK window accounting and the ping bookkeeping, and builds outgoing headers. The
Twisted adapter (channels/base.py) feeds it bytes and asks it whether it may send;
nothing here touches a socket, so tests and fuzzers drive it with bytes alone.

ACK window (spice-gtk channel-base.c, upstream red-channel-client.cpp): the server
sends SET_ACK {generation, window}; the client answers ACK_SYNC {generation} and
then one ACK every `window` messages. The server stops once more than 2 x window
messages are unacknowledged; an ACK of the current generation frees `window`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .enums import ChannelType, MsgcCommon
from .framer import DEFAULT_MAX_CLIENT_BODY, Framer, HeaderWriter
from .messages import Message, decode_body, encode_body, lookup, message
from .schema import External, WireError, encode_split


class ProtocolError(WireError):
    """The client broke the protocol: the connection should close with this reason."""


@dataclass(frozen=True, slots=True)
class Received:
    """A channel message for the channel's own handlers."""

    message: Message
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AckCredit:
    """An ACK freed room in the window: the adapter may send again."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to one of our pings; `rtt` in seconds."""

    rtt: float


@dataclass(frozen=True, slots=True)
class ProbePong:
    """The answer to a probe ping (the network test's); `rtt` in seconds."""

    ping_id: int
    rtt: float


Event = Received | AckCredit | Pong | ProbePong

_SET_ACK = message(None, "SET_ACK")
_ACK_ID = int(MsgcCommon.ACK)
_PING = message(None, "PING")
PINGS_REMEMBERED = 4
PROBES_REMEMBERED = 4
PROBE_IDS = 1 << 31  # probe pings are numbered from here, apart from the periodic ones


class ChannelCore:
    def __init__(
        self,
        channel_type: ChannelType,
        mini_header: bool,
        handles_acks: bool,
        max_body: int = DEFAULT_MAX_CLIENT_BODY,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        type_limits: dict[int, int] | None = None,
    ) -> None:
        self.clock_ns = clock_ns
        self.channel_type = channel_type
        self.handles_acks = handles_acks
        self.framer = Framer(mini_header, max_body, type_limits)
        self.writer = HeaderWriter(mini_header)
        self.ack_generation = 0
        self.ack_client_generation = 0
        self.ack_window = 0
        self.unacked = 0
        self.messages_sent = 0
        self.messages_received = 0
        self._pings: dict[int, int] = {}
        self._next_ping = 1
        self._probes: dict[int, int] = {}
        self._next_probe = PROBE_IDS

    @property
    def mini_header(self) -> bool:
        return self.framer.mini

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete client message held so far."""
        return self.framer.buffered

    def discard_input(self) -> None:
        """The connection is closing: forget any unfinished client message."""
        self.framer.discard()

    # --- in -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Every whole message in `data` (and what came before), decoded; raises ProtocolError."""
        try:
            frames = self.framer.feed(data)
        except WireError as exc:
            raise ProtocolError(str(exc)) from None
        events: list[Event] = []
        for msg_type, body in frames:
            self.messages_received += 1
            if msg_type == _ACK_ID and not body:  # the commonest message: one per window, no fields
                if self.ack_client_generation == self.ack_generation:
                    self.unacked = max(0, self.unacked - self.ack_window)
                    events.append(AckCredit())
                continue
            msg = lookup(self.channel_type, msg_type, from_server=False)
            if msg is None:
                raise ProtocolError(f"unknown message type {msg_type} on {self.channel_type.name}")
            try:
                fields = decode_body(msg, body)
            except WireError as exc:
                raise ProtocolError(str(exc)) from None
            event = self._base_message(msg, fields)
            if event is not None:
                events.append(event)
        return events

    def _base_message(self, msg: Message, fields: dict[str, Any]) -> Event | None:
        if msg.channel is None and msg.name == "ACK_SYNC":
            self.ack_client_generation = fields["generation"]
            return None
        if msg.channel is None and msg.name == "ACK":
            if self.ack_client_generation != self.ack_generation:
                return None  # an ACK of an older window: upstream ignores it too
            self.unacked = max(0, self.unacked - self.ack_window)
            return AckCredit()
        if msg.channel is None and msg.name == "PONG":
            return self._pong(fields)
        return Received(msg, fields)

    # --- out ----------------------------------------------------------------------------
    @property
    def waiting_for_ack(self) -> bool:
        return self.handles_acks and self.unacked > 2 * self.ack_window

    def header(self, msg_type: int, body_size: int) -> bytes:
        """The header of the next message; counts it against the ACK window."""
        self.unacked += 1
        self.messages_sent += 1
        return self.writer.header(msg_type, body_size)

    def encode(self, name: str, fields: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """(type, body) of one of this channel's server messages."""
        msg = message(self.channel_type, name)
        return msg.id, encode_body(msg, fields or {})

    def set_ack(self, window: int) -> tuple[int, bytes]:
        """A new ACK window: (type, body) of the SET_ACK to send first."""
        self.ack_generation += 1
        self.ack_window = window
        self.unacked = 0
        return _SET_ACK.id, encode_body(_SET_ACK, {"generation": self.ack_generation, "window": window})

    def ping(self) -> tuple[int, bytes]:
        """(type, body) of a PING stamped now; its PONG yields the round trip."""
        now_ns = self.clock_ns()
        ping_id = self._next_ping
        self._next_ping += 1
        self._pings = {k: v for k, v in self._pings.items() if k > ping_id - PINGS_REMEMBERED}
        self._pings[ping_id] = now_ns
        return _PING.id, encode_body(_PING, {"id": ping_id, "timestamp": now_ns, "data": b""})

    def probe_ping(self, padding: bytes = b"") -> tuple[int, int, bytes, bytes | None]:
        """(id, type, head, tail) of a PING stamped now carrying `padding` (written after the
        head as its own buffer, never copied into it). Its PONG yields `ProbePong`; probe
        pings are remembered apart from the periodic ones, so neither evicts the other."""
        now_ns = self.clock_ns()
        ping_id = self._next_probe
        self._next_probe = PROBE_IDS + (self._next_probe + 1 - PROBE_IDS) % PROBE_IDS
        while len(self._probes) >= PROBES_REMEMBERED:
            del self._probes[next(iter(self._probes))]
        self._probes[ping_id] = now_ns
        head, tail = encode_split(_PING.layout, {"id": ping_id, "timestamp": now_ns, "data": External(padding) if padding else b""})
        return ping_id, _PING.id, head, tail

    @property
    def awaiting_pong(self) -> bool:
        """A PING (periodic or probe) we still remember is unanswered."""
        return bool(self._pings or self._probes)

    def forget_probes(self) -> None:
        """The network test gave up: a late answer is ignored like any unknown PONG."""
        self._probes.clear()

    def _pong(self, fields: dict[str, Any]) -> Pong | ProbePong | None:
        ping_id = fields["id"]
        if ping_id in self._probes:
            sent = self._probes[ping_id]
            if sent != fields["timestamp"]:
                return None
            del self._probes[ping_id]
            return ProbePong(ping_id, (self.clock_ns() - sent) / 1e9)
        sent = self._pings.pop(ping_id, None)
        if sent is None or sent != fields["timestamp"]:
            return None
        return Pong((self.clock_ns() - sent) / 1e9)
