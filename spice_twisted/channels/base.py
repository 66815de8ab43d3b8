"""The channel-client base: the Twisted adapter over the sans-IO channel core.

Like a conch SSH channel it is a transport with a credit window: the SPICE ACK
window (counted in messages, kept by `wire.channel.ChannelCore`) and the TCP/TLS
transport's push-producer backpressure together decide when the next pipe item is
written. Incoming messages are dispatched by name to `handle_<NAME>` methods.
Collaborators (the render service, the cursor, the input router) are passed in by
whoever creates the channel client; the base needs only a `ChannelHost`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import task
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from zope.interface import implementer

from ..limits import MAX_CONTROL_BACKLOG
from ..render.payloads import PIECE_BYTES
from ..wire.channel import AckCredit, ChannelCore, Pong, ProbePong, ProtocolError, Received
from ..wire.enums import ChannelType
from ..wire.link import LinkRequest
from .pipe import Pipe, PipeItem
from .vector_write import VectorWriter, vector_writer_for

if TYPE_CHECKING:
    from ..guard import Guard
    from ..limits import Limits
    from ..link_estimate import LinkEstimate
    from .interfaces import ClientView

CHUNK = PIECE_BYTES  # messages larger than this are written a part at a time
BATCH_BYTES = 256 * 1024  # a plain transport gets the messages ready in writes of about this size
VISIT_MESSAGES = 64  # a send turn's visit writes at most this many messages ...
VISIT_BYTES = 1 << 20  # ... or bytes, then the next ready client's turn comes
CLOSE_GRACE = 10.0  # seconds a polite close may wait for the peer to read what is left
TURN_BUDGET = 0.02  # seconds of one reactor turn a channel may spend on what it received
# Channels whose plain TCP writes go to the socket as vectors of the shared pieces
# (vector_write.py): the display channel, where one payload goes to every client.
VECTORED_CHANNELS = frozenset({ChannelType.DISPLAY})
_DONE = object()

Parts = list[bytes]


class ChannelHost(Protocol):
    """What every channel client needs from the server, and all it gets (`SpiceServer` is
    one); what a channel type needs beyond it is passed to its constructor by name."""

    reactor: Any
    ping_interval: float  # seconds between PINGs (round trip, liveness)
    limits: Limits  # the message size limits of every channel
    guard: Guard | None  # unfinished-message deadlines and input budgets (None: no guard)

    def channel_closed(self, cc: ChannelClient) -> None: ...


@implementer(IPushProducer)
class ChannelClient(TwistedProtocol):
    """Base of every channel protocol. Subclasses set `channel_type` and add handlers."""

    channel_type: ChannelType
    handles_acks = False
    ack_window = 20
    log = Logger()

    def __init__(self, host: ChannelHost, client: ClientView, request: LinkRequest, mini_header: bool, secure: bool) -> None:
        self.host, self.client, self.request, self.secure = host, client, request, secure
        self.reactor = host.reactor
        self.channel_id = request.channel_id
        # Message size limits (per channel and per type) from the server's Limits.
        max_body, type_limits = host.limits.channel_limits(self.channel_type, 6 if mini_header else 18)
        self.core = ChannelCore(self.channel_type, mini_header, self.handles_acks, max_body=max_body, type_limits=type_limits)
        self._input_watch: Any = None  # unfinished-message deadline and budget (limits.InputWatch)
        self.pipe: Pipe = self.make_pipe()
        self._partial: tuple[PipeItem, Parts, int, int] | None = None  # a large message being written
        self.paused = False
        self.awaiting_encode = False
        self.last_progress = time.monotonic()  # when the peer last proved it reads
        self.connected = False
        self.bytes_sent = 0
        self.writes = 0  # calls into the transport (writeSequence of a batch, or a part)
        self._writer: VectorWriter | None = None  # plain TCP display channels: see _vector_writer
        self._writer_looked = False
        self._draining = False  # drain() is running (a write may call it again)
        self._drain_again = False
        self.draws_sent = 0
        self.bytes_per_second = 0
        self._bytes_at_sample = 0
        self.rtt: float | None = None
        # The client's link estimate, where this channel's ACKs measure the send rate (the
        # server sets it on display channels): (bytes, when written) of each message the
        # ACK window still counts, oldest first, and when the last ACK came.
        self.link_meter: LinkEstimate | None = None
        self._unacked_sent: deque[tuple[int, float]] = deque()
        self._last_ack_at: float | None = None
        self._ping_loop: task.LoopingCall | None = None
        self._inbox: deque[Any] = deque()  # received events (and handlers' unfinished steps)
        self._inbox_scheduled = False
        self._reading_paused = False
        self.connected_since = time.time()
        self.close_reason: str | None = None
        self._close_timer: Any = None  # a polite close that the peer does not read turns into an abort

    def make_pipe(self) -> Pipe:
        return Pipe()

    # --- identity and counters (read by stats) ----------------------------------------------
    @property
    def mini_header(self) -> bool:
        return self.core.mini_header

    @property
    def messages_sent(self) -> int:
        return self.core.messages_sent

    @property
    def messages_received(self) -> int:
        return self.core.messages_received

    @property
    def unacked(self) -> int:
        return self.core.unacked

    def __repr__(self) -> str:
        return f"<{type(self).__name__} session={self.client.session_id:#x} id={self.channel_id}>"

    # --- connection lifecycle ----------------------------------------------------------
    def connectionMade(self) -> None:
        self.connected = True
        guard = self.host.guard
        if guard is not None:
            self._input_watch = guard.watch(self.abort)
        self.transport.registerProducer(self, True)
        if self.handles_acks:
            self.pipe.appendleft(PipeItem(*self.core.set_ack(self.ack_window)))
        self.on_connected()
        self._ping_loop = task.LoopingCall(self.ping)
        self._ping_loop.clock = self.reactor
        self._ping_loop.start(self.host.ping_interval, now=True)

    def on_connected(self) -> None:
        """Channel-specific start (subclasses)."""

    def connectionLost(self, reason: Any = None) -> None:
        self.connected = False
        self.core.discard_input()
        if self._input_watch is not None:
            self._input_watch.stop()
        if self._ping_loop is not None and self._ping_loop.running:
            self._ping_loop.stop()
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        self._partial = None
        self._writer, self._writer_looked = None, True
        self._inbox.clear()
        self.on_disconnected()
        self.pipe.clear()
        self.host.channel_closed(self)

    def on_disconnected(self) -> None:
        """Channel-specific clean-up (subclasses)."""

    def close(self, reason: str) -> None:
        """Polite close: flush what is written, then disconnect. A peer that reads nothing
        would hold the connection (and its slot in the per-address count) for ever: after
        CLOSE_GRACE seconds it is aborted."""
        if self.connected and self.transport is not None:
            self.close_reason = self.close_reason or reason
            self.transport.loseConnection()
            if self._close_timer is None:
                self._close_timer = self.reactor.callLater(CLOSE_GRACE, self._close_expired, reason)

    def _close_expired(self, reason: str) -> None:
        self._close_timer = None
        if self.connected:
            self.abort(f"{reason} (and it read nothing more for {CLOSE_GRACE:g}s)")

    def abort(self, reason: str) -> None:
        """Drop the connection now (bad input, stalled reader): never waits on the peer."""
        if self.close_reason is not None and not self.connected:
            return  # already closed; one line per connection
        self.close_reason = self.close_reason or reason
        self.log.warn("{cc}: closing: {reason}", cc=self, reason=reason)
        self.connected = False
        self.core.discard_input()
        if self.transport is not None:
            self.transport.abortConnection()

    # --- receiving --------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if not self.connected:
            return  # closing: what a client still sends is not read
        received = self.core.messages_received
        try:
            events = self.core.receive_data(data)
        except ProtocolError as exc:
            if self._input_watch is not None:
                self._input_watch.stop()
            self.abort(f"protocol error: {exc}")
            return
        if self._input_watch is not None:
            self._input_watch.update(self.core.buffered, self.core.messages_received != received)
        self._inbox.extend(events)
        if not self._inbox_scheduled:
            self._run_inbox()

    def _run_inbox(self) -> None:
        """Handle received events in order for at most TURN_BUDGET seconds of this reactor
        turn. A handler may return an iterator of steps (a 1 MiB KEY_SCANCODE message is a
        million key events); past the budget the rest waits for the next turn with the
        transport's reading paused, so one client's flood never holds the reactor."""
        self._inbox_scheduled = False
        inbox, deadline = self._inbox, time.perf_counter() + TURN_BUDGET
        while inbox and self.connected:
            ev = inbox[0]
            if isinstance(ev, Iterator):
                if next(ev, _DONE) is _DONE:
                    inbox.popleft()
            else:
                inbox.popleft()
                steps = self._handle(ev)
                if steps is not None:
                    inbox.appendleft(steps)
            if inbox and time.perf_counter() > deadline:
                if not self._reading_paused and self.transport is not None:
                    self._reading_paused = True
                    self.transport.pauseProducing()
                self._inbox_scheduled = True
                self.reactor.callLater(0, self._run_inbox)
                return
        if self._reading_paused and self.connected:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _handle(self, ev: Any) -> Iterator[None] | None:
        if isinstance(ev, Received):
            handler = getattr(self, "handle_" + ev.message.name, None)
            if handler is None:
                self.log.debug("{cc}: ignoring {name}", cc=self, name=ev.message.name)
                return None
            return handler(ev.fields)
        if isinstance(ev, AckCredit):
            self.last_progress = time.monotonic()
            self._acked()
            self.drain()
        elif isinstance(ev, Pong):
            self.rtt = ev.rtt
            self.rtt_measured(ev.rtt)
        elif isinstance(ev, ProbePong):
            self.probe_answered(ev)
        return None

    def _acked(self) -> None:
        """An ACK window's messages reached the client: tell the link meter how many bytes,
        and whether all of them had been written before the previous ACK came. Then they
        were all waiting in the link (kernel buffers, the network) when it came, and the
        time between the two ACKs is what the link (or the client) took to carry them: the
        link, not the source, set the pace. (Our pipe may be empty meanwhile: kernel
        buffers hold megabytes.)"""
        if self.link_meter is None:
            return
        now, nbytes, last_written = time.monotonic(), 0, None
        for _ in range(min(self.core.ack_window, len(self._unacked_sent))):
            size, last_written = self._unacked_sent.popleft()
            nbytes += size
        prev, self._last_ack_at = self._last_ack_at, now
        queued = prev is not None and last_written is not None and last_written <= prev
        self.link_meter.delivered(nbytes, now, queued)

    def rtt_measured(self, rtt: float) -> None:
        """Hook: one of the periodic pings came back after `rtt` seconds."""

    def probe_answered(self, pong: ProbePong) -> None:
        """Hook: a probe ping (core.probe_ping) came back."""

    def handle_DISCONNECTING(self, fields: dict[str, Any]) -> None:
        self.close("client disconnecting")

    # --- sending ----------------------------------------------------------------------
    def send(self, name: str, fields: dict[str, Any] | None = None) -> None:
        """Queue one small message by name; its body is encoded now."""
        self.queue(PipeItem(*self.core.encode(name, fields)))

    def queue(self, item: PipeItem) -> None:
        if not self.connected:
            return
        if len(self.pipe) >= MAX_CONTROL_BACKLOG:
            # Replies pile up only when the client sends requests but reads nothing.
            self.abort(f"{len(self.pipe)} messages unread (the client sends but does not read)")
            return
        self.note_work()
        self.pipe.append(item)
        self.drain()

    def note_work(self) -> None:
        """Work appears: a pipe that was idle starts its stall clock now."""
        if not self.pipe and self._partial is None and not self.paused:
            self.last_progress = time.monotonic()

    def notify(self, text: str, severity: int = 1, visibility: int = 2) -> None:
        """A NOTIFY the client logs or shows (severity 0 info, 1 warn, 2 error; visibility
        0 low, 1 medium, 2 high: how much the user should see it)."""
        self.send(
            "NOTIFY",
            {
                "time_stamp": time.time_ns() // 1000,
                "severity": severity,
                "visibility": visibility,
                "what": 0,
                "message": text.encode() + b"\0",
            },
        )

    @property
    def waiting_for_ack(self) -> bool:
        return self.core.waiting_for_ack

    def marshal(self, item: PipeItem) -> Parts | None:
        """The body of `item` as buffers to write in order, or None while it is not ready
        (the subclass calls `encode_ready()` when it is)."""
        return [item.data]

    def run_turn(self) -> bool:
        """A send turn's visit (spice_twisted/turns.py): at most VISIT_MESSAGES messages or
        VISIT_BYTES bytes; True while more is ready to go."""
        return self.drain(VISIT_MESSAGES, VISIT_BYTES)

    def drain(self, max_messages: int | None = None, max_bytes: int | None = None) -> bool:
        """Write pipe items while the transport and the ACK window allow (and the limits,
        if given: a send turn's share). True if a limit stopped it with more ready.

        On a plain transport the messages ready go out in one writeSequence per BATCH_BYTES
        (header, per-client prefix, the shared payload's bytes: references, not copies); a
        display channel on plain TCP gives them to the socket in one sendmsg instead, and
        the transport gets only what the socket leaves (vector_write.py).
        Over TLS each message is its own write, so each ends a TLS record (tls.py). A large
        message goes out a part at a time, each only when the transport wants more, so a
        frame shared by many pipes is never buffered whole for every connection. The ACK
        window counts a message when its header is written. A write may call
        pauseProducing/resumeProducing (and so drain) re-entrantly: the inner call only
        asks this loop to look again, so the order of the writes cannot change.
        """
        if self._draining:
            self._drain_again = True
            return False
        self._draining = True
        try:
            while True:
                self._drain_again = False
                more = self._drain(max_messages, max_bytes)
                if not self._drain_again or more:
                    return more
        finally:
            self._draining = False

    def _drain(self, max_messages: int | None, max_bytes: int | None) -> bool:
        batch: list[bytes] = []
        batched = messages = nbytes = 0
        batching = not self.secure
        try:
            while self.connected and not self.paused:
                if self._partial is not None:
                    if batch:
                        self._write_batch(batch)
                        batch, batched = [], 0
                        continue
                    self._write_chunk()
                    continue
                if self.waiting_for_ack:
                    return False
                item = self.pipe.head()
                if item is None:
                    return False
                if (max_messages is not None and messages >= max_messages) or (max_bytes is not None and nbytes >= max_bytes):
                    return True
                parts = self.marshal(item)
                if parts is None:
                    self.awaiting_encode = True
                    return False
                if self.pipe.head() is not item:  # marshal replaced the head (a refresh expanded)
                    continue
                self.pipe.popleft()
                if not parts:  # nothing to send after all (its encode failed)
                    self.item_dropped(item)
                    continue
                size = sum(len(p) for p in parts)
                header = self.core.header(item.msg_type, size)
                self.bytes_sent += len(header) + size
                messages += 1
                nbytes += len(header) + size
                if self.link_meter is not None and self.handles_acks:
                    self._count_unacked(len(header) + size)
                if size > CHUNK:
                    if batch:
                        self._write_batch(batch)
                        batch, batched = [], 0
                    if batching and self._vector_writer() is not None:
                        self._partial = (item, [header, *parts], 0, 0)  # the header goes with the first piece
                        continue
                    self._partial = (item, parts, 0, 0)  # before the write, see _write_chunk
                    self.writes += 1
                    self.transport.write(header)
                    continue
                self.item_sent(item)  # counted before the write, which may re-enter drain
                if not batching:
                    self.writes += 1
                    self.transport.writeSequence([header, *parts])
                    continue
                batch.append(header)
                batch.extend(parts)
                batched += len(header) + size
                if batched >= BATCH_BYTES:
                    self._write_batch(batch)  # may pause us: the loop looks
                    batch, batched = [], 0
            return False
        finally:
            if batch and self.connected:
                self._write_batch(batch)

    def _vector_writer(self) -> VectorWriter | None:
        """The socket writer of a plain TCP display channel (looked up at its first write:
        the transport is known only once connected), else None."""
        if not self._writer_looked:
            self._writer_looked = True
            if not self.secure and self.channel_type in VECTORED_CHANNELS and self.connected:
                self._writer = vector_writer_for(self.transport)
        return self._writer

    def _write_batch(self, batch: list[bytes]) -> None:
        self.writes += 1
        writer = self._vector_writer()
        if writer is not None:
            writer.write(batch)  # to the socket from the shared pieces; the rest to the transport
        else:
            self.transport.writeSequence(batch)

    def _write_chunk(self) -> None:
        # State first: transport.write may call pauseProducing/resumeProducing (and so
        # drain) re-entrantly, as TLS does, and must find the next offset already there.
        # Twisted's transports take only bytes: a piece of a shared payload becomes bytes
        # here, once per client and CHUNK at a time (docs/architecture.md, "Writes").
        assert self._partial is not None
        writer = self._vector_writer()
        if writer is not None:
            self._write_vector_chunk(writer)
            return
        item, parts, index, offset = self._partial
        part = parts[index]
        end = min(offset + CHUNK, len(part))
        piece = part if offset == 0 and end == len(part) else part[offset:end]
        if end < len(part):
            self._partial = (item, parts, index, end)
        elif index + 1 < len(parts):
            self._partial = (item, parts, index + 1, 0)
        else:
            self._partial = None
        self.writes += 1
        self.transport.write(bytes(piece) if not isinstance(piece, bytes) else piece)
        if self._partial is None:
            self.item_sent(item)

    def _write_vector_chunk(self, writer: VectorWriter) -> None:
        """The next part of a large message to the socket: whole parts (the header, shared
        pieces of at most CHUNK) until CHUNK bytes are taken; only a part larger than CHUNK
        is cut, as a view. One sendmsg; what the socket leaves goes to the transport, which
        pauses us past its buffer size, so at most about a piece waits there per client."""
        assert self._partial is not None
        item, parts, index, offset = self._partial
        out: list[Any] = []
        total = 0
        while index < len(parts) and total < CHUNK:
            part = parts[index]
            end = min(len(part), offset + CHUNK)
            out.append(part if offset == 0 and end == len(part) else memoryview(part)[offset:end])
            total += end - offset
            index, offset = (index + 1, 0) if end == len(part) else (index, end)
        self._partial = (item, parts, index, offset) if index < len(parts) else None
        self.writes += 1
        writer.write(out)
        if self._partial is None:
            self.item_sent(item)

    def _count_unacked(self, nbytes: int) -> None:
        # The window bounds this (drain stops past 2 x window unacknowledged); the cap only
        # guards against a client whose ACKs the core stops counting.
        if len(self._unacked_sent) > 4 * self.core.ack_window + 8:
            self._unacked_sent.popleft()
        self._unacked_sent.append((nbytes, time.monotonic()))

    def item_sent(self, item: PipeItem) -> None:
        """Hook: an item's header was written (subclasses count and release)."""

    def item_dropped(self, item: PipeItem) -> None:
        """Hook: an item left the pipe unsent."""

    def encode_ready(self) -> None:
        self.awaiting_encode = False
        self.drain()

    @property
    def pipe_bytes(self) -> int:
        if self._partial is None:
            return self.pipe.bytes
        _, parts, index, offset = self._partial
        return self.pipe.bytes + sum(len(p) for p in parts[index:]) - offset

    def stalled_for(self, now: float) -> float:
        """How long the peer has read nothing while we had something for it: the transport
        stayed full (no resumeProducing) or the ACK window stayed closed (no ACK)."""
        if self.paused or (self.waiting_for_ack and (self.pipe or self._partial is not None)):
            return now - self.last_progress
        return 0.0

    def sample_rate(self) -> None:
        """Called once a second: bytes sent in the last second."""
        self.bytes_per_second = self.bytes_sent - self._bytes_at_sample
        self._bytes_at_sample = self.bytes_sent

    def ping(self) -> None:
        self.queue(PipeItem(*self.core.ping()))

    # --- IPushProducer (the transport tells us when its buffer is full) -----------------
    def pauseProducing(self) -> None:
        if not self.paused:
            self.last_progress = time.monotonic()  # the stall clock runs from the moment we must wait
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.last_progress = time.monotonic()  # the transport drained: the peer read
        self.drain()

    def stopProducing(self) -> None:
        self.paused = True
