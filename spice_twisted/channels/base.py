"""The channel-client base: one connection of one client to one channel, after the link.

Like a conch SSH channel it is a transport with a credit window: the SPICE ACK
window (counted in messages) and the TCP/TLS transport's push-producer
backpressure together decide when the next pipe item is written. Incoming
messages are dispatched by name to `handle_<NAME>` methods.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet import task
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from ..wire.enums import ChannelType
from ..wire.framer import Framer, HeaderWriter
from ..wire.link import LinkRequest
from ..wire.messages import decode_body, encode_body, lookup, message
from ..wire.schema import WireError

CHUNK = 256 * 1024  # bodies larger than this are written a piece at a time

if TYPE_CHECKING:
    from ..server import Client, SpiceServer


class PipeItem:
    """One message waiting in a pipe; its body is ready now."""

    __slots__ = ("msg_type", "data")

    def __init__(self, msg_type: int, data: bytes) -> None:
        self.msg_type, self.data = msg_type, data

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def body(self, cc: ChannelClient) -> bytes | None:
        return self.data

    @property
    def dropped(self) -> bool:
        """True when the item can never be sent (its encode failed): the pipe skips it."""
        return False


@implementer(IPushProducer)
class ChannelClient(Protocol):
    """Base of every channel protocol. Subclasses set `channel_type` and add handlers."""

    channel_type: ChannelType
    handles_acks = False
    ack_window = 20
    log = Logger()

    def __init__(self, server: SpiceServer, client: Client, request: LinkRequest, mini_header: bool, secure: bool) -> None:
        self.server, self.client, self.request, self.secure = server, client, request, secure
        self.channel_id = request.channel_id
        self.framer = Framer(mini_header)
        self.writer = HeaderWriter(mini_header)
        self.pipe: deque[PipeItem] = deque()
        self._partial: tuple[PipeItem, bytes, int] | None = None  # a large body being written
        self.paused = False
        self.awaiting_encode = False
        self.last_progress = time.monotonic()
        self.connected = False
        self.ack_generation = 0
        self.ack_client_generation = 0
        self.unacked = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.messages_received = 0
        self.encodes = 0  # drawables whose one encode this pipe started
        self.cache_hits = 0  # drawables this pipe got already encoded (by another pipe)
        self.coalesced = 0  # unsent updates replaced by newer ones
        self.draws_sent = 0
        self.bytes_per_second = 0
        self._bytes_at_sample = 0
        self.rtt: float | None = None
        self._pings: dict[int, int] = {}
        self._ping_ids = itertools.count(1)
        self._ping_loop: task.LoopingCall | None = None
        self.connected_since = time.time()
        self.close_reason: str | None = None

    # --- identity ---------------------------------------------------------------------
    @property
    def mini_header(self) -> bool:
        return self.framer.mini

    def __repr__(self) -> str:
        return f"<{type(self).__name__} session={self.client.session_id:#x} id={self.channel_id}>"

    # --- connection lifecycle ----------------------------------------------------------
    def connectionMade(self) -> None:
        self.connected = True
        self.transport.registerProducer(self, True)
        if self.handles_acks:
            self.set_ack(self.ack_window)
        self.on_connected()
        self._ping_loop = task.LoopingCall(self.ping)
        self._ping_loop.clock = self.server.reactor
        self._ping_loop.start(self.server.ping_interval, now=True)

    def on_connected(self) -> None:
        """Channel-specific start (subclasses)."""

    def connectionLost(self, reason: Any = None) -> None:
        self.connected = False
        if self._ping_loop is not None and self._ping_loop.running:
            self._ping_loop.stop()
        self.pipe.clear()
        self._partial = None
        self.on_disconnected()
        self.server.channel_closed(self)

    def on_disconnected(self) -> None:
        """Channel-specific clean-up (subclasses)."""

    def close(self, reason: str) -> None:
        """Polite close: flush what is written, then disconnect."""
        if self.connected and self.transport is not None:
            self.close_reason = self.close_reason or reason
            self.transport.loseConnection()

    def abort(self, reason: str) -> None:
        """Drop the connection now (bad input, stalled reader): never waits on the peer."""
        self.close_reason = self.close_reason or reason
        self.log.warn("{cc}: closing: {reason}", cc=self, reason=reason)
        if self.transport is not None:
            self.transport.abortConnection()

    # --- receiving --------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except WireError as exc:
            self.abort(f"protocol error: {exc}")
            return
        for msg_type, body in messages:
            if not self.connected:
                return
            self.messages_received += 1
            msg = lookup(self.channel_type, msg_type, from_server=False)
            if msg is None:
                self.abort(f"protocol error: unknown message type {msg_type} on {self.channel_type.name}")
                return
            try:
                fields = decode_body(msg, body)
            except WireError as exc:
                self.abort(f"protocol error: {exc}")
                return
            handler = getattr(self, "handle_" + msg.name, None)
            if handler is None:
                self.log.debug("{cc}: ignoring {name}", cc=self, name=msg.name)
            else:
                handler(fields)

    def handle_ACK_SYNC(self, fields: dict[str, Any]) -> None:
        self.ack_client_generation = fields["generation"]

    def handle_ACK(self, fields: dict[str, Any]) -> None:
        if self.ack_client_generation == self.ack_generation:
            self.unacked = max(0, self.unacked - self.ack_window)
            self.last_progress = time.monotonic()
            self.drain()

    def handle_PONG(self, fields: dict[str, Any]) -> None:
        sent = self._pings.pop(fields["id"], None)
        if sent is not None and sent == fields["timestamp"]:
            self.rtt = (time.monotonic_ns() - sent) / 1e9

    def handle_DISCONNECTING(self, fields: dict[str, Any]) -> None:
        self.close("client disconnecting")

    # --- sending ----------------------------------------------------------------------
    def send(self, name: str, fields: dict[str, Any] | None = None) -> None:
        """Queue one message by name; its body is encoded now (small control messages)."""
        msg = message(self.channel_type, name)
        self.queue(PipeItem(msg.id, encode_body(msg, fields or {})))

    def queue(self, item: PipeItem) -> None:
        """Append to the pipe. Drawables are encoded only when a pipe first needs them;
        control messages arrive here already encoded (they are a few bytes)."""
        if not self.connected:
            return
        if not self.pipe:
            self.last_progress = time.monotonic()  # a stall is counted from when work appears
        self.pipe.append(item)
        self.drain()

    def notify(self, text: str, severity: int = 1) -> None:
        """A NOTIFY the client logs or shows (severity 0 info, 1 warn, 2 error)."""
        self.send(
            "NOTIFY",
            {"time_stamp": time.time_ns() // 1000, "severity": severity, "visibility": 2, "what": 0, "message": text.encode() + b"\0"},
        )

    def set_ack(self, window: int) -> None:
        self.ack_generation += 1
        self.ack_window = window
        self.unacked = 0
        set_ack = message(None, "SET_ACK")
        self.pipe.appendleft(PipeItem(set_ack.id, encode_body(set_ack, {"generation": self.ack_generation, "window": window})))
        self.drain()

    @property
    def waiting_for_ack(self) -> bool:
        return self.handles_acks and self.unacked > 2 * self.ack_window

    def drain(self) -> None:
        """Write pipe items while the transport and the ACK window allow.

        A large body goes out in CHUNK-sized writes, each only when the transport wants
        more, so a 3 MiB frame shared by many pipes is not copied whole into every
        connection's buffer. The ACK window counts a message when its header is written.
        """
        while self.connected and not self.paused:
            if self._partial is not None:
                self._write_chunk()
                continue
            if not self.pipe or self.waiting_for_ack:
                return
            item = self.pipe[0]
            body = item.body(self)
            if item.dropped:
                self.pipe.popleft()
                self.item_dropped(item)
                continue
            if body is None:  # its encode is running; encode_ready() resumes us
                self.awaiting_encode = True
                return
            self.pipe.popleft()
            header = self.writer.header(item.msg_type, len(body))
            self.unacked += 1
            self.messages_sent += 1
            self.bytes_sent += len(header) + len(body)
            self.last_progress = time.monotonic()
            if len(body) <= CHUNK:
                self.item_sent(item)  # counted before the write, which may re-enter drain
                self.transport.writeSequence([header, body])
            else:
                self._partial = (item, body, 0)  # before the write, see _write_chunk
                self.transport.write(header)

    def _write_chunk(self) -> None:
        # State first: transport.write may call pauseProducing/resumeProducing (and so
        # drain) re-entrantly, as TLS does, and must find the next offset already there.
        assert self._partial is not None
        item, body, offset = self._partial
        end = offset + CHUNK
        self._partial = (item, body, end) if end < len(body) else None
        self.last_progress = time.monotonic()
        self.transport.write(body[offset:end])
        if end >= len(body):
            self.item_sent(item)

    def item_sent(self, item: PipeItem) -> None:
        """Hook for subclasses' counters."""

    def item_dropped(self, item: PipeItem) -> None:
        """Hook: an item left the pipe unsent."""

    def encode_ready(self) -> None:
        self.awaiting_encode = False
        self.drain()

    @property
    def pipe_bytes(self) -> int:
        partial = len(self._partial[1]) - self._partial[2] if self._partial is not None else 0
        return partial + sum(item.nbytes for item in self.pipe)

    def stalled_for(self, now: float) -> float:
        """How long a non-empty pipe has made no progress because the client does not read."""
        if self._partial is not None and self.paused:
            return now - self.last_progress
        if not self.pipe or self.awaiting_encode or not (self.paused or self.waiting_for_ack):
            return 0.0
        return now - self.last_progress

    def sample_rate(self) -> None:
        """Called once a second: bytes sent in the last second."""
        self.bytes_per_second = self.bytes_sent - self._bytes_at_sample
        self._bytes_at_sample = self.bytes_sent

    def ping(self) -> None:
        ping_id = next(self._ping_ids)
        stamp = time.monotonic_ns()
        self._pings = {k: v for k, v in self._pings.items() if k > ping_id - 4}
        self._pings[ping_id] = stamp
        self.send("PING", {"id": ping_id, "timestamp": stamp, "data": b""})

    # --- IPushProducer (the transport tells us when its buffer is full) -----------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.drain()

    def stopProducing(self) -> None:
        self.paused = True
