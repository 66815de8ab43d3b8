"""The server's display side in-process: real server objects over Twisted's in-memory
transport with a fake clock, and a client that reads, decodes (display_decode.Screen) and
ACKs what was written. Shared by the in-process display tests and benchmarks."""

from __future__ import annotations

import struct

import numpy as np
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from spice_twisted.render.drawable import Drawable
from spice_twisted.render.payloads import PayloadService
from spice_twisted.render.rect import Rect
from spice_twisted.render.service import RenderCounters
from spice_twisted.server import SpiceServer
from spice_twisted.sources.base import DisplaySource
from spice_twisted.wire.enums import ChannelType, MsgcCommon, MsgcDisplay
from spice_twisted.wire.framer import Framer
from spice_twisted.wire.link import LinkRequest
from spice_twisted.wire.ticket import Ticket

from .display_decode import Screen

W, H = 200, 100


class Canvas(DisplaySource):
    """A source the test draws into by hand."""

    name = "canvas"
    width, height = W, H

    def start(self, render, cursor) -> None:
        self.render = render


def make_server(source: DisplaySource | None = None, clock: Clock | None = None, **kw) -> SpiceServer:
    srv = SpiceServer(source or Canvas(), Ticket(None), clock or Clock(), **kw)
    srv.source.start(srv.render, srv.cursor)  # no srv.start(): no threads, encodes run inline
    return srv


def connect_channel(srv: SpiceServer, channel: ChannelType, session: int = 0, caps=frozenset(), common=frozenset()):
    cc = srv.create_channel_client(LinkRequest(session, channel, 0, frozenset(common), frozenset(caps)), True, False, "test")
    t = StringTransport()
    cc.makeConnection(t)
    return cc, t


def open_display(
    srv: SpiceServer,
    caps=frozenset(),
    cache_px: int = 0,
    glz_window: int = 0,
    glz_dictionary: int | None = None,
    main_link: tuple[frozenset, frozenset] = (frozenset(), frozenset()),
):
    """A main and a display channel of one new client. `main_link`: the main channel's
    (channel caps, common caps), what tells the server which program the client is."""
    main, _ = connect_channel(srv, ChannelType.MAIN, caps=main_link[0], common=main_link[1])
    cc, t = connect_channel(srv, ChannelType.DISPLAY, main.client.session_id, caps)
    dictionary = (1 if glz_window else 0) if glz_dictionary is None else glz_dictionary
    init = struct.pack("<BqBi", 1, cache_px, dictionary, glz_window)
    cc.dataReceived(struct.pack("<HI", MsgcDisplay.INIT, len(init)) + init)
    return cc, t


class Reader:
    """The client side of one display channel: reads what was written, ACKs on demand."""

    def __init__(self, cc, t) -> None:
        self.cc, self.t = cc, t
        self.framer = Framer(mini=True, max_body=1 << 30)
        self.screen = Screen()
        self.messages: list[tuple[int, bytes]] = []
        self.bytes = 0  # what crossed the wire to this client

    def read(self) -> list[tuple[int, bytes]]:
        data = self.t.value()
        self.bytes += len(data)
        msgs = self.framer.feed(data)
        self.t.clear()
        self.screen.feed(msgs)
        self.messages += msgs
        return msgs

    def ack(self) -> None:
        self.cc.dataReceived(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, self.cc.core.ack_generation))
        self.cc.dataReceived(struct.pack("<HI", MsgcCommon.ACK, 0) * 3)

    def catch_up(self, srv: SpiceServer) -> None:
        for _ in range(1000):
            self.read()
            if not self.cc.pipe and self.cc._partial is None:
                return
            self.ack()
            # A handler past its turn budget (wall time: a loaded machine) goes on in the next
            # reactor turn, scheduled on the fake clock: run that turn.
            if isinstance(srv.reactor, Clock):
                srv.reactor.advance(0)
        raise AssertionError("the pipe never emptied")


def draw(srv: SpiceServer, r: Rect, value: int, flush: bool = True) -> None:
    """Paint `r` grey `value` (X byte 0: LZ and QUIC carry no X byte, as in an xRGB surface)."""
    srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = (value, value, value, 0)
    srv.render.damage(r)
    if flush:
        srv.render.flush()


def stripes(srv: SpiceServer, r: Rect, value: int, flush: bool = True) -> None:
    """Like `draw`, but two colours in stripes: an image to encode (one colour goes as DRAW_FILL)."""
    px = srv.render.primary.pixels[r.top : r.bottom, r.left : r.right]
    px[:] = (value, value, value, 0)
    px[::2, :, 1] = 255 - value
    srv.render.damage(r)
    if flush:
        srv.render.flush()


def noise(srv: SpiceServer, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    srv.render.primary.pixels[:] = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    srv.render.primary.pixels[..., 3] = 0
    srv.render.damage(srv.render.primary.rect)
    srv.render.flush()


def held_drawable(rect: Rect, px: np.ndarray, payloads: dict) -> Drawable:
    """A drawable held once, with the given payloads already in its payload service (a
    marshalling test asks no encode of it)."""
    service = PayloadService(Clock(), RenderCounters())
    d = Drawable(0, 0, rect, px, service)
    d.hold()
    for codec, payload in payloads.items():
        service.put(d, codec, payload)
    return d
