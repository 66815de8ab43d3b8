"""The display pipe in-process: ACK window, coalescing, the backlog bound, failed encodes.

Drives the real server objects over Twisted's in-memory transport with a fake clock, so
what the pipe holds can be checked message by message.
"""

from __future__ import annotations

import struct

import numpy as np
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from spice_twisted.render.encoder import Encoder
from spice_twisted.render.rect import Rect
from spice_twisted.server import SpiceServer
from spice_twisted.sources.base import DisplaySource
from spice_twisted.wire.enums import ChannelType, MsgcCommon, MsgcDisplay, MsgDisplay
from spice_twisted.wire.framer import Framer
from spice_twisted.wire.link import LinkRequest
from spice_twisted.wire.ticket import Ticket

W, H = 200, 100


class Canvas(DisplaySource):
    """A source the test draws into by hand."""

    name = "canvas"
    width, height = W, H

    def start(self, render, cursor) -> None:
        self.render = render


def _server() -> SpiceServer:
    srv = SpiceServer(Canvas(), Ticket(None), Clock())
    srv.source.start(srv.render, srv.cursor)  # no srv.start(): no threads, encodes run inline
    return srv


def _connect(srv: SpiceServer, channel: ChannelType, session: int = 0):
    cc = srv.create_channel_client(LinkRequest(session, channel, 0, frozenset(), frozenset()), True, False, "test")
    t = StringTransport()
    cc.makeConnection(t)
    return cc, t


def _display(srv: SpiceServer):
    main, _ = _connect(srv, ChannelType.MAIN)
    cc, t = _connect(srv, ChannelType.DISPLAY, main.client.session_id)
    init = struct.pack("<BqBi", 1, 0, 0, 0)
    cc.dataReceived(struct.pack("<HI", MsgcDisplay.INIT, len(init)) + init)
    return cc, t


def _sent(t: StringTransport) -> list[tuple[int, bytes]]:
    return Framer(mini=True, max_body=1 << 30).feed(t.value())


def _draw(srv: SpiceServer, r: Rect, value: int) -> None:
    srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = value
    srv.render.commit([r])


def test_ack_window_stops_and_ack_resumes():
    srv = _server()
    cc, t = _display(srv)
    for i in range(100):
        _draw(srv, Rect(i, 0, i + 1, 1), i)  # 100 one-pixel updates nobody covers
    sent = len(_sent(t))
    assert sent == 2 * cc.ack_window + 1  # stops once more than 2 x window are unacknowledged
    cc.dataReceived(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, cc.ack_generation))
    cc.dataReceived(struct.pack("<HI", MsgcCommon.ACK, 0))
    assert len(_sent(t)) == sent + cc.ack_window


def test_covered_updates_are_coalesced_and_backlog_collapses_to_its_area():
    srv = _server()
    cc, t = _display(srv)
    for i in range(60):  # fill the window so the rest waits in the pipe
        _draw(srv, Rect(i, 50, i + 1, 51), 1)
    before = cc.coalesced
    _draw(srv, Rect(0, 0, 10, 10), 2)
    _draw(srv, Rect(0, 0, 20, 20), 3)  # covers the first: it goes
    assert cc.coalesced == before + 1
    # Many small updates in one corner: the backlog collapses to that corner, not the screen.
    for i in range(400):  # 250 distinct 10x10 spots: more pixels than the whole surface
        x, y = i % 50, (i // 50) % 5 * 10
        _draw(srv, Rect(x, y, x + 10, y + 10), i % 256)
    from spice_twisted.channels.display import DrawableItem, RefreshItem, _area

    items = [it for it in cc.pipe if isinstance(it, DrawableItem)]
    refreshes = [it for it in items if isinstance(it, RefreshItem)]
    assert len(refreshes) == 1 and items[-1] is refreshes[0]  # one refresh, at the end
    assert refreshes[0].drawable is None  # no pixels copied while the client is behind
    assert cc.pending_pixels <= W * H
    assert sum(_area(it) for it in items) == cc.pending_pixels
    assert refreshes[0].rect.bottom <= 60  # the corner that changed, not the whole screen
    snapshots, pipe_len = srv.render.counters.snapshots, len(cc.pipe)
    for i in range(100):  # more updates while behind: absorbed by the refresh, no copies
        _draw(srv, Rect(i, 20, i + 5, 25), 7)
    assert srv.render.counters.snapshots == snapshots and len(cc.pipe) == pipe_len
    # Once the client reads and ACKs again, it ends with exactly the server's pixels.
    framer = Framer(mini=True, max_body=1 << 30)
    fb = np.zeros((H, W, 4), dtype=np.uint8)

    def paint_what_was_sent() -> None:
        for msg_type, body in framer.feed(t.value()):
            if msg_type == MsgDisplay.DRAW_COPY:
                top, left, bottom, right = struct.unpack_from("<iiii", body, 4)
                pixels = body[57 + 36 :]  # fixed DRAW_COPY part, then the bitmap header
                fb[top:bottom, left:right] = np.frombuffer(pixels, np.uint8).reshape(bottom - top, right - left, 4)
        t.clear()

    for _ in range(50):
        paint_what_was_sent()
        if not cc.pipe:
            break
        cc.dataReceived(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, cc.ack_generation))
        cc.dataReceived(struct.pack("<HI", MsgcCommon.ACK, 0) * 3)
    assert not cc.pipe and cc.pending_pixels == 0
    assert np.array_equal(fb, srv.render.primary.pixels)
    assert srv.render.counters.snapshots == snapshots + 1  # the refresh, taken when sent


def test_a_failed_encode_is_dropped_and_the_pipe_goes_on():
    class Broken(Encoder):
        def run(self, fn, size_hint):
            if size_hint == 4 * 7 * 7:  # only the 7x7 update fails
                raise RuntimeError("codec exploded")
            return fn()

    srv = _server()
    srv.encoder = srv.render.encoder = Broken(srv.reactor)
    cc, t = _display(srv)
    _draw(srv, Rect(0, 0, 7, 7), 9)
    _draw(srv, Rect(50, 50, 52, 52), 8)
    draws = [body for msg_type, body in _sent(t) if msg_type == MsgDisplay.DRAW_COPY]
    boxes = [struct.unpack_from("<iiii", b, 4) for b in draws]
    assert (0, 0, 7, 7) not in boxes and (50, 50, 52, 52) in boxes
    assert srv.render.counters.encode_errors == 1 and not cc.pipe
