"""Fuzz targets: each takes a `Chooser` and drives one entry point with hostile input.

A target returns normally when the server behaved: bad input may only end in the
entry point's own error (WireError / ProtocolError), in a `LinkFailed` event, or in
that one connection being closed. Anything else raises `Finding` or lets the
unexpected exception through, which the runner reports with the input that caused it.

- framer: wire.framer.Framer with random limits, any split.
- decode: wire.messages.decode_body of every client message, random and cut bodies.
- core: wire.channel.ChannelCore of each channel, hostile streams.
- link: wire.link.ServerLink, the link stage state machine, with random owner answers.
- link-protocol: channels.link.LinkProtocol over a memory transport with a real server
  (ticket, view-only ticket, backoff, timeouts on a fake clock).
- websocket: channels.link.PortRouter around a LinkProtocol with a real server: an upgrade
  request (sometimes mangled), then the link inside WebSocket frames cut anywhere, with
  random bytes, control frames or text sometimes mixed in; linked or closed, never stuck.
- channels: a real SpiceServer with two clients of four channels each over memory
  transports: hostile streams into any channel, ACKs, clock steps, vanishing peers;
  the other connections must be untouched and every bound must hold.
- agent: the same server with a source that takes the clipboard and resizes: AGENT_START,
  then agent messages (valid, cut, lying, random) in AGENT_DATA pieces cut anywhere, and
  AGENT_TOKENs; the agent's buffer and queue stay bounded, the other client untouched.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import Message, Ping, Request, TextMessage
from wsproto.utilities import RemoteProtocolError

from spice_twisted.channels.agent import MAX_QUEUED as AGENT_MAX_QUEUED
from spice_twisted.channels.link import LinkProtocol, PortRouter
from spice_twisted.limits import MAX_CONTROL_BACKLOG, Limits
from spice_twisted.server import SpiceServer
from spice_twisted.sources.base import DisplaySource
from spice_twisted.sources.desktop_agent import TEXT, DesktopAgent
from spice_twisted.wire.agent import encode_message
from spice_twisted.wire.agent import header as agent_header
from spice_twisted.wire.channel import ChannelCore, ProtocolError
from spice_twisted.wire.client_link import link_message, ticket_message
from spice_twisted.wire.enums import AgentMsg, ChannelType, CommonCap, LinkError, MsgcCommon, MsgcMain
from spice_twisted.wire.framer import Framer
from spice_twisted.wire.link import IllegalTransition, LinkFailed, LinkRequested, ServerLink, State, TicketReceived
from spice_twisted.wire.messages import CLIENT, LINK_HEADER, LINK_REPLY, decode_body
from spice_twisted.wire.schema import WireError, decode
from spice_twisted.wire.ticket import LinkKey, Ticket

from .gen import Chooser, split, stream, value_for

CHANNELS = [ChannelType.MAIN, ChannelType.DISPLAY, ChannelType.INPUTS, ChannelType.CURSOR]
PASSWORD, VIEW_PASSWORD = b"right-password", b"view-password"


class Finding(AssertionError):
    """The server broke a promise (a bound, an invariant) without raising by itself."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Finding(what)


# --- sans-IO entry points ------------------------------------------------------------------
def target_framer(ch: Chooser) -> None:
    mini = bool(ch.int(0, 1))
    limit = ch.int(0, 4096)
    per_type = {ch.int(0, 200): ch.int(0, 512) for _ in range(ch.int(0, 3))}
    f = Framer(mini, limit, per_type)
    hsize = 6 if mini else 18
    data = stream(ch, CHANNELS[ch.int(0, 3)], mini)
    for piece in split(ch, data):
        try:
            out = f.feed(piece)
        except WireError:
            return
        for msg_type, body in out:
            check(len(body) <= per_type.get(msg_type, limit), f"body of {len(body)} bytes passed limit")
        check(f.buffered <= max([limit, *per_type.values()]) + hsize + len(piece), "framer holds more than one message")


def target_decode(ch: Chooser) -> None:
    msgs = list(CLIENT.values())
    msg = msgs[ch.int(0, len(msgs) - 1)]
    body = ch.bytes(96)
    if ch.int(0, 1):
        from spice_twisted.wire.messages import encode_body

        try:
            body = encode_body(msg, value_for(ch, msg.layout))
        except WireError:
            pass
        body = body[: ch.int(0, len(body))]
    try:
        decode_body(msg, body)
    except WireError:
        pass


def target_core(ch: Chooser) -> None:
    channel = CHANNELS[ch.int(0, 3)]
    mini = bool(ch.int(0, 1))
    limits = Limits()
    max_body, per_type = limits.channel_limits(channel, 6 if mini else 18)
    core = ChannelCore(
        channel, mini, handles_acks=channel in (ChannelType.DISPLAY, ChannelType.CURSOR), max_body=max_body, type_limits=per_type
    )
    if ch.int(0, 1):
        core.set_ack(ch.int(1, 40))
    for _ in range(ch.int(0, 3)):
        core.header(1, 0)
        core.ping()
    for piece in split(ch, stream(ch, channel, mini)):
        try:
            core.receive_data(piece)
        except ProtocolError:
            return
        check(core.buffered <= max(max_body, *per_type.values(), 0) + 18, f"core holds {core.buffered} bytes")
        check(core.unacked >= 0, "negative unacked count")


def target_link(ch: Chooser) -> None:
    link = ServerLink()
    data = _link_bytes(ch)
    for piece in split(ch, data, 4):
        if link.state in (State.DONE, State.FAILED):
            return
        events = link.receive_data(piece)
        while events:
            ev = events.pop(0)
            if isinstance(ev, LinkFailed):
                check(ev.reply[:4] == b"REDQ" or len(ev.reply) == 4, "a link failure without a reply to send")
                return
            if isinstance(ev, LinkRequested):
                if ch.int(0, 3) == 0:
                    link.reject(LinkError.CHANNEL_NOT_AVAILABLE)
                    return
                _, more = link.accept(bytes(162), frozenset({CommonCap.AUTH_SELECTION, CommonCap.MINI_HEADER}), frozenset())
                events.extend(more)
            elif isinstance(ev, TicketReceived):
                check(len(ev.encrypted) == 128, "ticket of the wrong size")
                link.result(LinkError.OK if ch.int(0, 1) else LinkError.PERMISSION_DENIED)
                return
    # the owner may not answer twice
    try:
        link.reject(LinkError.ERROR)
    except IllegalTransition:
        pass


def _link_bytes(ch: Chooser, key_der: bytes | None = None, channel: int | None = None, connection_id: int = 0) -> bytes:
    kind = ch.int(0, 4)
    if kind == 0:
        return ch.bytes(256)
    chan = channel if channel is not None else (CHANNELS[ch.int(0, 3)] if ch.int(0, 3) else ch.int(0, 255))
    common = [c for c in (CommonCap.AUTH_SELECTION, CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER) if ch.int(0, 1)]
    msg = bytearray(link_message(chan, connection_id, common, [ch.int(0, 40) for _ in range(ch.int(0, 3))]))
    if kind == 1:  # mutate a few bytes of an otherwise valid link
        for _ in range(ch.int(1, 4)):
            msg[ch.int(0, len(msg) - 1)] = ch.int(0, 255)
    tail = b""
    if CommonCap.AUTH_SELECTION in common:
        tail += struct.pack("<I", ch.int(0, 3) if ch.int(0, 3) == 0 else 1)
    if key_der is not None and kind >= 3:
        pw = [PASSWORD, VIEW_PASSWORD, b"wrong", ch.bytes(70)][ch.int(0, 3)]
        tail = ticket_message(key_der, pw[:60], CommonCap.AUTH_SELECTION in common)
    else:
        tail += ch.bytes(160)
    return bytes(msg) + tail + (ch.bytes(32) if ch.int(0, 2) == 0 else b"")


# --- in-process server ---------------------------------------------------------------------
class Canvas(DisplaySource):
    name = "fuzz-canvas"
    width, height = 64, 48

    def start(self, render: Any, cursor: Any) -> None:
        self.render = render


class AgentCanvas(Canvas, DesktopAgent):
    """A canvas whose desktop takes text and any size within the surface bound."""

    clipboard_types = frozenset({TEXT})
    can_resize = True

    def resize(self, width: int, height: int) -> None:
        if self.max_surface.allows(width, height) and width * height <= 1 << 20:
            self.render.resize(width, height)


class FixedKeys:
    """A stand-in for LinkKeyPool: one key for every link (a fresh key costs ~10 ms)."""

    _key: LinkKey | None = None

    def __init__(self) -> None:
        if FixedKeys._key is None:
            FixedKeys._key = LinkKey()
        self.keys: list[LinkKey] = []
        self.made_inline = 0
        self.taken = 0

    def take(self) -> LinkKey:
        self.taken += 1
        assert FixedKeys._key is not None
        return FixedKeys._key

    def start(self) -> None: ...
    def stop(self) -> None: ...


def make_server(ch: Chooser | None = None, source: DisplaySource | None = None, **limits: Any) -> SpiceServer:
    lim = Limits(message_timeout=5.0, link_timeout=10.0, max_buffered_total=64 * 1024, **limits)
    srv = SpiceServer(source or Canvas(), Ticket(PASSWORD), Clock(), limits=lim, view_ticket=Ticket(VIEW_PASSWORD))
    srv.link_keys = FixedKeys()  # type: ignore[assignment]
    srv.source.start(srv.render, srv.cursor)
    return srv


class Conn:
    """A protocol on a memory transport; a close by the server is delivered like Twisted does."""

    def __init__(self, protocol: Any, host: str = "10.0.0.1") -> None:
        self.protocol = protocol
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.lost = False
        protocol.makeConnection(self.transport)
        self.settle()

    def feed(self, data: bytes) -> None:
        if not self.lost and not self.transport.disconnecting:
            self.protocol.dataReceived(data)
        self.settle()

    def settle(self) -> None:
        if self.transport.disconnecting and not self.lost:
            self.drop()

    def drop(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionError("closed")))

    def read(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out


def target_link_protocol(ch: Chooser) -> None:
    srv = make_server()
    clock: Clock = srv.reactor
    conns = []
    sid = 0
    for _ in range(ch.int(1, 4)):
        conn = Conn(LinkProtocol(srv, secure=bool(ch.int(0, 1))), host=f"10.0.0.{ch.int(1, 3)}")
        conns.append(conn)
        key = FixedKeys._key
        assert key is not None
        chan = ChannelType.MAIN if not sid or ch.int(0, 1) else CHANNELS[ch.int(1, 3)]
        data = _link_bytes(ch, key.public_der, chan, sid if chan != ChannelType.MAIN else 0)
        for piece in split(ch, data, 4):
            conn.feed(piece)
            if ch.int(0, 3) == 0:
                clock.advance(ch.int(0, 12))
                conn.settle()
        clock.advance(0)
        conn.settle()
        if srv.clients and not sid:
            sid = next(iter(srv.clients))
        out = conn.read()
        if out[:4] == b"REDQ" and len(out) >= LINK_HEADER.size + LINK_REPLY.size:
            reply = decode(LINK_REPLY, out[LINK_HEADER.size : LINK_HEADER.size + LINK_REPLY.size])
            check(reply["error"] in set(LinkError), f"unknown link error {reply['error']}")
        if ch.int(0, 3) == 0:
            conn.drop()
    clock.advance(30)
    for c in conns:
        c.settle()
        check(c.lost or c.protocol.channel is not None, "a connection neither linked nor closed after the link timeout")
    _check_server(srv)


def target_websocket(ch: Chooser) -> None:
    srv = make_server()
    clock: Clock = srv.reactor
    conn = Conn(PortRouter(LinkProtocol(srv, secure=bool(ch.int(0, 1)))), host=f"10.0.0.{ch.int(1, 3)}")
    client = WSConnection(ConnectionType.CLIENT)
    head = client.send(Request(host="h", target="/" + ch.bytes(8).hex(), subprotocols=["binary"] if ch.int(0, 3) else []))
    if ch.int(0, 4) == 0:  # a mangled request
        at = ch.int(0, len(head))
        head = head[:at] + ch.bytes(40) + head[at + ch.int(0, 8) :]
    for piece in split(ch, head, 4):
        conn.feed(piece)
    out = conn.read()
    if out.startswith(b"HTTP/1.1 101"):
        try:
            client.receive_data(out)
            list(client.events())
        except RemoteProtocolError:  # the mangling hit the key: the server answered another one
            conn.drop()
            return _check_server(srv)
        if client.state is not ConnectionState.OPEN:  # mangled bytes after the head closed it at once
            check(conn.lost or conn.transport.disconnecting, "the server sent a close frame and kept the connection")
            conn.drop()
            return _check_server(srv)
        key = FixedKeys._key
        assert key is not None
        data = _link_bytes(ch, key.public_der, ChannelType.MAIN, 0)
        wire = b""
        for piece in split(ch, data, 5):
            extra = ch.int(0, 9)
            if extra == 0:
                wire += client.send(Ping(payload=ch.bytes(20)))
            elif extra == 1:
                wire += ch.bytes(30)  # garbage between frames
            elif extra == 2:
                wire += client.send(TextMessage(data="x"))
            wire += client.send(Message(data=piece))
        for piece in split(ch, wire, 6):
            conn.feed(piece)
            if ch.int(0, 5) == 0:
                clock.advance(ch.int(0, 3))
                conn.settle()
    elif not conn.lost:
        check(out == b"" or out.startswith(b"HTTP/1.1 4"), f"a refused upgrade got {out[:40]!r}")
    if ch.int(0, 3) == 0:
        conn.drop()
    clock.advance(0)
    clock.advance(30)
    conn.settle()
    check(conn.lost or conn.protocol.inner.channel is not None, "a WebSocket connection neither linked nor closed after the link timeout")
    _check_server(srv)


def _check_server(srv: SpiceServer) -> None:
    for sid, client in srv.clients.items():
        check(sid == client.session_id, "client under the wrong id")
        for cc in client.channels:
            check(cc.client is client, "channel in the wrong client")
            if cc.connected:
                check(len(cc.pipe) <= MAX_CONTROL_BACKLOG + 128, f"{cc}: pipe of {len(cc.pipe)}")
    check(srv.guard.budget.total >= 0 and srv.guard.budget.total <= srv.limits.max_buffered_total, "input budget out of bounds")


class _Client:
    """One client of the in-process server: four channel clients on memory transports."""

    def __init__(self, srv: SpiceServer) -> None:
        self.srv = srv
        self.conns: dict[ChannelType, Conn] = {}
        self.session = 0
        for ctype in CHANNELS:
            from spice_twisted.wire.link import LinkRequest

            req = LinkRequest(self.session, ctype, 0, frozenset(), frozenset())
            cc = srv.create_channel_client(req, True, False, "10.0.0.9:1")
            if ctype == ChannelType.MAIN:
                self.session = cc.client.session_id
            self.conns[ctype] = Conn(cc)


def target_channels(ch: Chooser) -> None:
    srv = make_server()
    clock: Clock = srv.reactor
    victim = _Client(srv)
    attacker = _Client(srv)
    for _ in range(ch.int(1, 6)):
        ctype = CHANNELS[ch.int(0, 3)]
        conn = attacker.conns[ctype]
        action = ch.int(0, 9)
        if action <= 6:
            for piece in split(ch, stream(ch, ctype, True)):
                conn.feed(piece)
        elif action == 7:
            gen = conn.protocol.core.ack_generation
            conn.feed(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, gen) + struct.pack("<HI", MsgcCommon.ACK, 0) * ch.int(0, 4))
        elif action == 8:
            clock.advance(ch.int(0, 40) / 4)
        else:
            conn.drop()
        for c in attacker.conns.values():
            c.settle()
        _check_server(srv)
        if ch.int(0, 2) == 0:
            attacker.conns[ctype].read()  # sometimes the attacker reads, mostly not
    clock.advance(60)
    for c in [*attacker.conns.values(), *victim.conns.values()]:
        c.settle()
    # The victim was never touched: all its channels still open, its client still known.
    for ctype, conn in victim.conns.items():
        check(not conn.lost and not conn.transport.disconnecting, f"victim's {ctype.name} channel was closed")
    check(victim.session in srv.clients, "victim's session was dropped")
    _check_server(srv)


def _agent_fields(ch: Chooser, kind: AgentMsg) -> dict[str, Any] | None:
    """Valid (often extreme) fields for one agent message we take, or None."""
    small = lambda: ch.int(0, 5000) if ch.int(0, 3) else ch.int(0, 2**32 - 1)  # noqa: E731
    if kind == AgentMsg.MONITORS_CONFIG:
        mons = [{"height": small(), "width": small(), "depth": 32, "x": 0, "y": 0} for _ in range(ch.int(0, 3))]
        return {"num_of_monitors": len(mons), "flags": ch.int(0, 3), "monitors": mons, "physical_sizes": ch.bytes(8)}
    if kind == AgentMsg.CLIPBOARD_GRAB:
        return {"types": [ch.int(0, 7) for _ in range(ch.int(0, 4))]}
    if kind == AgentMsg.CLIPBOARD:
        return {"clip_type": ch.int(0, 3), "data": ch.bytes(200)}
    if kind == AgentMsg.CLIPBOARD_REQUEST:
        return {"clip_type": ch.int(0, 3)}
    if kind in (AgentMsg.CLIPBOARD_RELEASE, AgentMsg.CLIENT_DISCONNECTED):
        return {}
    if kind == AgentMsg.FILE_XFER_START:
        text = b"[vdagent-file-xfer]\nname=" + ch.bytes(20) + b"\nsize=%d\n" % ch.int(0, 1 << 30)
        return {"id": ch.int(0, 3), "data": text if ch.int(0, 3) else ch.bytes(40)}
    if kind == AgentMsg.FILE_XFER_DATA:
        data = ch.bytes(100)
        return {"id": ch.int(0, 3), "size": len(data), "data": data}
    if kind == AgentMsg.FILE_XFER_STATUS:
        return {"id": ch.int(0, 3), "result": ch.int(0, 8), "data": b""}
    if kind == AgentMsg.ANNOUNCE_CAPABILITIES:
        return {"request": ch.int(0, 1), "caps": [small() for _ in range(ch.int(0, 2))]}
    return None


def _agent_stream(ch: Chooser) -> bytes:
    """A few agent messages: encoded from valid fields, random bodies, or lying headers."""
    out = b""
    for _ in range(ch.int(0, 4)):
        kind = ch.int(1, 17)
        how = ch.int(0, 3)
        fields = _agent_fields(ch, AgentMsg(kind)) if how == 0 and kind in AgentMsg._value2member_map_ else None
        if fields is not None:
            data = encode_message(AgentMsg(kind), fields, bool(ch.int(0, 1)))
        elif how == 2:  # a header that lies about its size (more or less than follows)
            out += agent_header(kind, ch.int(0, 1 << 25)) + ch.bytes(40)
            continue
        elif how == 3:
            out += ch.bytes(60)
            continue
        else:
            data = ch.bytes(80)
        out += agent_header(kind, len(data)) + data
    return out


def target_agent(ch: Chooser) -> None:
    srv = make_server(source=AgentCanvas())
    clock: Clock = srv.reactor
    victim, attacker = _Client(srv), _Client(srv)
    for c in (victim, attacker):
        c.conns[ChannelType.MAIN].feed(struct.pack("<HII", MsgcMain.AGENT_START, 4, 0xFFFFFFFF if ch.int(0, 1) else ch.int(0, 3)))
    main = attacker.conns[ChannelType.MAIN]
    agent = main.protocol.agent
    for _ in range(ch.int(1, 5)):
        if ch.int(0, 4) == 0:
            main.feed(struct.pack("<HII", MsgcMain.AGENT_TOKEN, 4, ch.int(0, 5)))
        data = _agent_stream(ch)
        pos = 0
        while pos < len(data) and not main.lost:
            n = ch.int(1, 2100 if ch.int(0, 9) == 0 else 2048)
            piece = data[pos : pos + n]
            main.feed(struct.pack("<HI", MsgcMain.AGENT_DATA, len(piece)) + piece)
            pos += n
            check(agent.link.stream.buffered <= agent.link.stream.max_clipboard + 8, "agent buffer past its bound")
            check(agent.link.queued_bytes <= AGENT_MAX_QUEUED, "agent queue past its bound")
        if ch.int(0, 2) == 0:
            main.read()
        clock.advance(ch.int(0, 8) / 4)
        _check_server(srv)
    for c in [*attacker.conns.values(), *victim.conns.values()]:
        c.settle()
    for ctype, conn in victim.conns.items():
        check(not conn.lost and not conn.transport.disconnecting, f"victim's {ctype.name} channel was closed")
    check(victim.session in srv.clients, "victim's session was dropped")
    _check_server(srv)


TARGETS: dict[str, Callable[[Chooser], None]] = {
    "framer": target_framer,
    "decode": target_decode,
    "core": target_core,
    "link": target_link,
    "link-protocol": target_link_protocol,
    "websocket": target_websocket,
    "channels": target_channels,
    "agent": target_agent,
}
