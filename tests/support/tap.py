"""A wire tap: a TCP proxy on 127.0.0.1 between real clients and the server that records
what crosses it, parsed independently of the server's own framing code.

Point a client at `WireTap(server_port).port`: spice-gtk opens every channel to the
same host:port, so all of a session's channels go through the tap. Each accepted
connection is forwarded to the server, both directions, one thread per direction;
bytes are parsed *before* they are forwarded, so whatever a client has received the
tap has already recorded.

Per connection the tap learns from the client's SpiceLinkMess the channel type, the
connection (session) id and the client's caps, from the server's SpiceLinkReply the
server's caps, then the u32 link result, and from there on splits both streams into
messages: mini headers (u16 type, u32 size) when both sides advertised common cap
MINI_HEADER, else the 18-byte full header. Server messages are kept as (type, body);
DRAW_COPYs are decoded on demand into `Draw` records (image type, id, payload bytes).

The tap can also shape the link it forwards, changeable at run time: `tap.shape(rate=...,
delay=..., client_delay=...)`. Server -> client bytes then cross one bottleneck shared by
all of the tap's connections (as a real link's: a burst on the display channel delays the
main channel's pings), at most `rate` bytes a second, and arrive `delay` seconds after
they left it; client -> server bytes arrive `client_delay` later. Recording is unchanged:
bytes are parsed as they are read from the sender, before they wait in the shaper. Each
shaped direction of a connection holds at most QUEUE_LIMIT bytes (a router's buffer);
past that the tap stops reading, so the sender feels the link as it would a real one.
`tap.shape()` alone makes it a plain forwarder again.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from spice_twisted.wire.caps import unpack_words, words_to_caps
from spice_twisted.wire.enums import ChannelType, CommonCap, MsgDisplay
from spice_twisted.wire.messages import LINK_HEADER, LINK_MESS, LINK_REPLY, decode_body
from spice_twisted.wire.schema import decode
from support.display_decode import DRAW_COPY, Screen
from support.forwarding import DelayLine, Forwarder, close_quietly, end_of_stream, wait_for_the_other

_MINI = struct.Struct("<HI")
_FULL = struct.Struct("<QHII")
TICKET_BYTES = 128
QUEUE_LIMIT = 128 * 1024  # bytes one shaped direction of one connection holds
PIECE = 8 * 1024  # shaped bytes are timed in pieces of at most this

# A parser is a generator: it yields how many bytes it needs next and is sent exactly those.
Parser = Generator[int, bytes, None]


class _Feeder:
    """Runs a parser generator over a byte stream arriving in arbitrary pieces."""

    def __init__(self, parser: Parser) -> None:
        self.parser = parser
        self.buf = bytearray()
        self.pos = 0
        self.need: int | None = next(parser)

    def feed(self, data: bytes) -> None:
        if self.need is None:
            return  # the parser finished (or gave up): only forwarding from here
        self.buf += data
        while self.need is not None and len(self.buf) - self.pos >= self.need:
            chunk = bytes(self.buf[self.pos : self.pos + self.need])
            self.pos += self.need
            try:
                self.need = self.parser.send(chunk)
            except StopIteration:
                self.need = None
        if self.pos > (1 << 20) or self.pos == len(self.buf):
            del self.buf[: self.pos]
            self.pos = 0


@dataclass(frozen=True)
class Draw:
    """One DRAW_COPY as the wire carried it."""

    index: int  # position in the connection's server message list
    image_type: int
    image_id: int
    image_flags: int
    box: tuple[int, int, int, int]  # left, top, right, bottom
    payload: bytes  # the image's own data: LZ4 data, an LZ_PLT stream (without its palette), or the bitmap's pixel rows


class TapConnection:
    """One proxied TCP connection (one channel of one client) and what crossed it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.channel_type: int | None = None
        self.connection_id: int | None = None
        self.client_common_caps: frozenset[int] = frozenset()
        self.client_channel_caps: frozenset[int] = frozenset()
        self.server_common_caps: frozenset[int] = frozenset()
        self.server_channel_caps: frozenset[int] = frozenset()
        self.link_error: int | None = None
        self.link_result: int | None = None
        self.mini: bool | None = None
        self.messages: list[tuple[int, bytes]] = []  # server -> client, after the link
        self.client_messages: list[tuple[int, bytes]] = []  # client -> server, after the link
        self.bytes_from_server = 0
        self.bytes_from_client = 0
        self.parse_errors: list[str] = []
        self.closed = False
        self._draws: dict[int, Draw] = {}
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        kind = ChannelType(self.channel_type).name if self.channel_type in ChannelType._value2member_map_ else self.channel_type
        return f"<TapConnection #{self.number} {kind} session={self.connection_id} messages={len(self.messages)}>"

    # --- parsers (run in the pump threads) ------------------------------------------------
    def _mini_header(self) -> bool:
        return CommonCap.MINI_HEADER in self.client_common_caps and CommonCap.MINI_HEADER in self.server_common_caps

    def _messages(self, out: list[tuple[int, bytes]]) -> Parser:
        mini = self._mini_header()
        self.mini = mini
        while True:
            if mini:
                msg_type, size = _MINI.unpack((yield _MINI.size))
            else:
                _serial, msg_type, size, _sub_list = _FULL.unpack((yield _FULL.size))
            body = (yield size) if size else b""
            with self._cond:
                out.append((msg_type, body))
                self._cond.notify_all()

    def client_parser(self) -> Parser:
        hdr = decode(LINK_HEADER, (yield LINK_HEADER.size))
        raw = yield hdr["size"]
        mess = decode(LINK_MESS, raw[: LINK_MESS.size])
        ncommon, nchan = mess["num_common_caps"], mess["num_channel_caps"]
        words = unpack_words(raw[mess["caps_offset"] :], ncommon + nchan)
        self.client_common_caps = words_to_caps(words[:ncommon])
        self.client_channel_caps = words_to_caps(words[ncommon:])
        self.connection_id = mess["connection_id"]
        self.channel_type = mess["channel_type"]
        # The client sends the rest only after the server's reply, which the other pump
        # parsed before forwarding it: the server's caps are known by now.
        if CommonCap.AUTH_SELECTION in self.client_common_caps:
            yield 4  # the auth mechanism
        yield TICKET_BYTES
        yield from self._messages(self.client_messages)

    def server_parser(self) -> Parser:
        hdr = decode(LINK_HEADER, (yield LINK_HEADER.size))
        body = yield hdr["size"]
        reply = decode(LINK_REPLY, body[: LINK_REPLY.size])
        self.link_error = reply["error"]
        if reply["error"]:
            return
        ncommon, nchan = reply["num_common_caps"], reply["num_channel_caps"]
        words = unpack_words(body[reply["caps_offset"] :], ncommon + nchan)
        self.server_common_caps = words_to_caps(words[:ncommon])
        self.server_channel_caps = words_to_caps(words[ncommon:])
        (self.link_result,) = struct.unpack("<I", (yield 4))
        if self.link_result:
            return
        yield from self._messages(self.messages)

    # --- reading what was recorded (test thread) ----------------------------------------
    @property
    def is_display(self) -> bool:
        return self.channel_type == ChannelType.DISPLAY

    def mark(self) -> int:
        """The number of server messages recorded so far: a position to look from later."""
        with self._cond:
            return len(self.messages)

    def snapshot(self, start: int = 0) -> list[tuple[int, bytes]]:
        with self._cond:
            return self.messages[start:]

    def draws(self, start: int = 0) -> list[Draw]:
        """Every DRAW_COPY from server message `start` on, decoded (cached)."""
        out = []
        for i, (msg_type, body) in enumerate(self.snapshot(start), start):
            if msg_type != MsgDisplay.DRAW_COPY:
                continue
            d = self._draws.get(i)
            if d is None:
                f = decode_body(DRAW_COPY, body)
                image, box = f["src_bitmap"], f["box"]
                d = Draw(
                    i,
                    image["type"],
                    image["id"],
                    image["flags"],
                    (box["left"], box["top"], box["right"], box["bottom"]),
                    image.get("data", image.get("lz_plt", {}).get("data", b"")),
                )
                self._draws[i] = d
            out.append(d)
        return out

    def image_types(self, start: int = 0) -> dict[int, int]:
        counts: dict[int, int] = {}
        for d in self.draws(start):
            counts[d.image_type] = counts.get(d.image_type, 0) + 1
        return counts

    def screen(self) -> Screen:
        """The tap's own decode of everything this display connection received."""
        s = Screen()
        s.feed(self.snapshot())
        return s

    def wait_for(self, pred: Callable[[TapConnection], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                v = pred(self)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"tap {self!r}: {what} not reached in {timeout}s")
                self._cond.wait(min(left, 0.2))


class _Link:
    """One direction of the tap's link, shared by all its connections: a rate limit
    (bytes/s, None for none) and a one-way delay (seconds)."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.delay = 0.0
        self._free_at = 0.0  # when the bottleneck has sent everything scheduled so far
        self._lock = threading.Lock()

    @property
    def shaped(self) -> bool:
        return self.rate is not None or self.delay > 0

    def set(self, rate: float | None, delay: float) -> None:
        with self._lock:
            self.rate, self.delay = rate, delay

    def schedule(self, nbytes: int) -> float:
        """When `nbytes` entering the link now come out of its far end."""
        with self._lock:
            now = time.monotonic()
            if self.rate:
                self._free_at = max(now, self._free_at) + nbytes / self.rate
                return self._free_at + self.delay
            return now + self.delay


class _Sender:
    """One direction of one connection through a `_Link`: unshaped, bytes go straight on;
    shaped, in pieces through a delay line, whose room the pump waits for."""

    def __init__(self, dst: socket.socket, link: _Link, name: str) -> None:
        self.dst, self.link = dst, link
        self.line = DelayLine(dst, QUEUE_LIMIT, name)

    def send(self, data: bytes) -> bool:
        """Forward `data` (called by the pump only); False once dst failed."""
        if self.line.broken:
            return False
        if not self.link.shaped and self.line.idle:
            try:  # nothing queued: the plain forwarder's path, exactly as unshaped
                self.dst.sendall(data)
            except OSError:
                self.line.broken = True
            return not self.line.broken
        view = memoryview(data)
        for i in range(0, len(data), PIECE):
            piece = bytes(view[i : i + PIECE])
            if not self.line.wait_room():
                return False
            self.line.put(self.link.schedule(len(piece)), piece)
        return True


class WireTap(Forwarder):
    """Listens on 127.0.0.1 (a free port) and forwards each connection to the server."""

    name = "tap"

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.connections: list[TapConnection] = []
        self.downlink = _Link()  # server -> client
        self.uplink = _Link()  # client -> server
        super().__init__(server_port)

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        conn = TapConnection(len(self.connections))
        self.connections.append(conn)
        done = threading.Barrier(2, action=lambda: self._finish(client, server, conn))
        for src, dst, parser, attr, link in (
            (client, server, conn.client_parser(), "bytes_from_client", self.uplink),
            (server, client, conn.server_parser(), "bytes_from_server", self.downlink),
        ):
            sender = _Sender(dst, link, f"tap-{self.port}-{conn.number}-{attr}")
            threading.Thread(target=self._pump, args=(src, sender, _Feeder(parser), conn, attr, done), daemon=True).start()

    def shape(self, rate: float | None = None, delay: float = 0.0, client_delay: float = 0.0) -> None:
        """From now on: server -> client at most `rate` bytes/s (None: no limit), arriving
        `delay` s later; client -> server `client_delay` s later. Bytes already queued keep
        their times. No arguments: unshaped."""
        self.downlink.set(rate, delay)
        self.uplink.set(None, client_delay)

    def _pump(self, src: socket.socket, sender: _Sender, feeder: _Feeder, conn: TapConnection, attr: str, done: threading.Barrier) -> None:
        dst = sender.dst
        try:
            while True:
                try:
                    data = src.recv(1 << 18)
                except OSError:
                    break
                if not data:
                    break
                setattr(conn, attr, getattr(conn, attr) + len(data))
                try:
                    feeder.feed(data)  # record first, then forward
                except Exception as exc:  # a parse failure must never break the proxy
                    conn.parse_errors.append(f"{attr}: {exc!r}")
                    feeder.need = None
                if not sender.send(data):
                    break
            sender.line.drain(timeout=60)  # what is queued still leaves
            end_of_stream(dst)
        finally:
            wait_for_the_other(done)

    def _finish(self, client: socket.socket, server: socket.socket, conn: TapConnection) -> None:
        close_quietly(client, server)
        with conn._cond:
            conn.closed = True
            conn._cond.notify_all()

    # --- looking up connections ---------------------------------------------------------------
    def channels(self, channel_type: int) -> list[TapConnection]:
        with self._lock:
            return [c for c in self.connections if c.channel_type == channel_type]

    def displays(self) -> list[TapConnection]:
        return self.channels(ChannelType.DISPLAY)

    def display(self, timeout: float = 20.0) -> TapConnection:
        """The (one) display connection that linked through this tap."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [c for c in self.displays() if c.link_result == 0]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise AssertionError(f"several display connections through one tap: {found}")
            time.sleep(0.05)
        raise AssertionError(f"no display connection through the tap in {timeout}s: {self.connections}")
