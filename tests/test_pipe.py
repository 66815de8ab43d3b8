"""The display pipeline in-process: frames, the ACK window, coalescing, bounds, codecs, resizes.

Drives the real server objects over Twisted's in-memory transport with a fake clock,
so what each pipe holds and writes can be checked message by message; what was
written is decoded independently (tests/support/display_decode.py).
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from support.inprocess import H, Reader, W, draw, make_server, noise, open_display

from spice_twisted import codecs
from spice_twisted.channels.pipe import DrawItem, RefreshItem
from spice_twisted.render.handoff import FrameHandoff
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import DisplayCap, ImageCompression, ImageType, MsgcCommon, MsgcDisplay, MsgDisplay
from spice_twisted.wire.framer import Framer


def test_first_frame_then_exact_updates():
    srv = make_server()
    noise(srv)
    cc, t = open_display(srv)
    r = Reader(cc, t)
    r.catch_up(srv)
    kinds = [m for m, _ in r.messages]
    assert kinds.index(MsgDisplay.SURFACE_CREATE) < kinds.index(MsgDisplay.DRAW_COPY) < kinds.index(MsgDisplay.MARK)
    draw(srv, Rect(10, 10, 30, 20), 77)
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb, srv.render.primary.pixels)


def test_damage_is_batched_into_frames_at_max_fps():
    srv = make_server(max_fps=10)
    cc, t = open_display(srv)
    r = Reader(cc, t)
    srv.reactor.advance(0)
    r.catch_up(srv)
    frames = srv.render.counters.frames
    for i in range(500):  # one event each, as an input flood would: no frame runs in between
        draw(srv, Rect(i % 150, 5, i % 150 + 3, 8), i % 256, flush=False)
    assert srv.render.counters.frames == frames
    srv.reactor.advance(0.1)
    assert srv.render.counters.frames == frames + 1  # all of it in one frame
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb, srv.render.primary.pixels)
    assert r.screen.draws <= 1 + 16  # the first frame, then at most MAX_RECTS drawables
    # The next damage waits for the frame interval, then goes as one frame.
    draw(srv, Rect(0, 50, 5, 55), 3, flush=False)
    srv.reactor.advance(0.05)
    assert srv.render.counters.frames == frames + 1
    srv.reactor.advance(0.06)
    assert srv.render.counters.frames == frames + 2


def test_ack_window_stops_and_ack_resumes():
    srv = make_server()
    cc, t = open_display(srv)
    srv.render.flush()
    for i in range(60):
        draw(srv, Rect(i, 0, i + 1, 1), i)  # 60 one-pixel frames nobody covers (fewer than the pipe holds)
    sent = len(Framer(mini=True, max_body=1 << 30).feed(t.value()))
    assert sent == 2 * cc.ack_window + 1  # stops once more than 2 x window are unacknowledged
    t.clear()
    cc.dataReceived(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, cc.core.ack_generation))
    cc.dataReceived(struct.pack("<HI", MsgcCommon.ACK, 0))
    assert len(Framer(mini=True, max_body=1 << 30).feed(t.value())) == cc.ack_window


def test_covered_updates_are_coalesced_and_a_backlog_collapses_to_its_region():
    srv = make_server()
    cc, t = open_display(srv)
    r = Reader(cc, t)
    for i in range(60):  # fill the window so the rest waits in the pipe
        draw(srv, Rect(i, 50, i + 1, 51), 1)
    before = cc.coalesced
    draw(srv, Rect(0, 0, 10, 10), 2)
    draw(srv, Rect(0, 0, 20, 20), 3)  # covers the first: it goes
    assert cc.coalesced == before + 1
    # Updates in two far corners, more of them than the pipe may hold: one refresh of the
    # two corners (a region), not of the box around them.
    for i in range(300):
        x = (i // 2 % 50) if i % 2 else 140 + (i // 2 % 50)
        draw(srv, Rect(x, 90, x + 10, 100), i % 256)
    refreshes = [it for it in cc.pipe if isinstance(it, RefreshItem)]
    assert len(refreshes) == 1 and cc.pipe.collapses >= 1
    region = refreshes[0].region
    assert region.area < 0.5 * region.bounds.area  # the corners, not the box spanning them
    assert len(cc.pipe) <= cc.pipe.max_items and cc.pipe.bytes <= cc.pipe.max_bytes
    snapshots, pipe_len = srv.render.counters.snapshots, len(cc.pipe)
    for i in range(100):  # more updates while behind: absorbed by the refresh, no copies
        draw(srv, Rect(i, 20, i + 5, 25), 7)
    assert srv.render.counters.snapshots == snapshots and len(cc.pipe) == pipe_len
    # Once the client reads and ACKs again, it ends with exactly the server's pixels.
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb, srv.render.primary.pixels)
    assert srv.render.counters.snapshots > snapshots  # the refresh was taken when sent


def test_dropped_drawables_know_which_pipe_dropped_them():
    srv = make_server()
    a, ta = open_display(srv)
    b, tb = open_display(srv)
    srv.render.flush()
    rb = Reader(b, tb)
    rb.catch_up(srv)
    Reader(a, ta).catch_up(srv)
    for i in range(60):  # a stops reading; b reads everything
        draw(srv, Rect(i, 50, i + 1, 51), 1)
        rb.catch_up(srv)
    draw(srv, Rect(0, 0, 10, 10), 2)
    first = [it for it in a.pipe if isinstance(it, DrawItem)][-1].drawable
    draw(srv, Rect(0, 0, 20, 20), 3)  # covers it in a's pipe
    assert a.pipe.id in first.dropped_by and b.pipe.id not in first.dropped_by


def test_twenty_thousand_updates_keep_a_stalled_pipe_bounded():
    srv = make_server()
    stalled = [open_display(srv)[0] for _ in range(4)]
    live, t = open_display(srv)
    reader = Reader(live, t)
    rng = np.random.default_rng(5)
    for i in range(20_000):
        x, y = int(rng.integers(0, W - 4)), int(rng.integers(0, H - 4))
        draw(srv, Rect(x, y, x + 4, y + 4), i % 256)
        if i % 50 == 0:
            reader.catch_up(srv)
    reader.catch_up(srv)
    assert np.array_equal(reader.screen.fb, srv.render.primary.pixels)
    for cc in stalled:
        assert cc.pipe.peak_items <= cc.pipe.max_items + 1
        assert cc.pipe.peak_bytes <= cc.pipe.max_bytes
        assert len(cc.pipe.items) <= 4 * max(cc.pipe.max_items, 16) + 1  # tombstones bounded too
    # Their drawables are gone once collapsed: only what their pipes still reference stays.
    live_refs = sum(1 for cc in stalled for it in cc.pipe if isinstance(it, DrawItem))
    assert live_refs <= 4 * (stalled[0].pipe.max_items + 1)


class Counting:
    """A wrapper at the codec boundary: counts each codec's encodes."""

    def __init__(self, monkeypatch) -> None:
        self.calls: dict[str, int] = {}
        for name, fn in list(codecs.ENCODERS.items()):
            monkeypatch.setitem(codecs.ENCODERS, name, self._wrap(name, fn))

    def _wrap(self, name, fn):
        def encode(pixels):
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(pixels)

        return encode


def test_lz4_and_raw_clients_cost_one_encode_per_codec(monkeypatch):
    counting = Counting(monkeypatch)
    srv = make_server()
    noise(srv)
    lz4_clients = [Reader(*open_display(srv, caps={DisplayCap.LZ4_COMPRESSION})) for _ in range(3)]
    raw_clients = [Reader(*open_display(srv)) for _ in range(2)]
    everyone = lz4_clients + raw_clients
    for c in everyone:
        c.catch_up(srv)
    counting.calls.clear()
    for i in range(10):
        draw(srv, Rect(10 * i, 10, 10 * i + 8, 40), 40 + i)
        for c in everyone:
            c.catch_up(srv)
    assert counting.calls == {"lz4": 10, "bitmap": 10}
    for c in everyone:
        assert np.array_equal(c.screen.fb, srv.render.primary.pixels)
    assert set(lz4_clients[0].screen.image_types) == {ImageType.LZ4}
    assert set(raw_clients[0].screen.image_types) == {ImageType.BITMAP}


def test_preferred_compression_switches_a_client_live(monkeypatch):
    counting = Counting(monkeypatch)
    srv = make_server()
    cc, t = open_display(srv, caps={DisplayCap.LZ4_COMPRESSION})
    r = Reader(cc, t)
    r.catch_up(srv)
    assert cc.codec == "lz4"
    cc.dataReceived(struct.pack("<HIB", MsgcDisplay.PREFERRED_COMPRESSION, 1, ImageCompression.OFF))
    draw(srv, Rect(0, 0, 50, 50), 9)
    r.catch_up(srv)
    assert cc.codec == "bitmap" and counting.calls.get("bitmap") == 1
    assert r.screen.image_types[ImageType.BITMAP] == 1
    assert np.array_equal(r.screen.fb, srv.render.primary.pixels)
    cc.dataReceived(struct.pack("<HIB", MsgcDisplay.PREFERRED_COMPRESSION, 1, ImageCompression.LZ))
    draw(srv, Rect(10, 10, 190, 90), 11)
    r.catch_up(srv)
    assert cc.codec == "lz" and counting.calls.get("lz") == 1
    assert r.screen.image_types[ImageType.LZ_RGB] == 1
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])  # LZ carries no X byte


@pytest.mark.parametrize(
    "setting, caps, codec",
    [
        ("off", {DisplayCap.LZ4_COMPRESSION}, "bitmap"),
        ("lz4", set(), "bitmap"),
        ("auto", {5}, "lz4"),
        ("lz", set(), "lz"),  # every client decodes LZ: no cap says so
        ("lz", {DisplayCap.LZ4_COMPRESSION}, "lz"),
    ],
)
def test_image_compression_setting(setting, caps, codec):
    srv = make_server(image_compression=setting)
    cc, _ = open_display(srv, caps=caps)
    assert cc.codec == codec


def test_a_failed_encode_is_dropped_and_the_pipe_goes_on(monkeypatch):
    real = codecs.ENCODERS["bitmap"]

    def broken(pixels):
        if pixels.shape[:2] == (7, 7):  # only the 7x7 update fails
            raise RuntimeError("codec exploded")
        return real(pixels)

    monkeypatch.setitem(codecs.ENCODERS, "bitmap", broken)
    srv = make_server()
    cc, t = open_display(srv)
    r = Reader(cc, t)
    r.catch_up(srv)
    draw(srv, Rect(0, 0, 7, 7), 9)
    draw(srv, Rect(50, 50, 52, 52), 8)
    r.catch_up(srv)
    assert srv.render.counters.encode_errors == 1 and not cc.pipe
    assert np.array_equal(r.screen.fb[50:52, 50:52], srv.render.primary.pixels[50:52, 50:52])


def test_resize_gives_every_client_the_new_surface_and_its_content():
    srv = make_server()
    readers = [Reader(*open_display(srv, caps={DisplayCap.MONITORS_CONFIG})) for _ in range(2)]
    noise(srv)
    for r in readers:
        r.catch_up(srv)
    draw(srv, Rect(0, 0, 5, 5), 1, flush=False)  # pending damage for the old surface
    srv.render.resize(320, 240)
    srv.render.primary.pixels[:] = 200
    srv.render.damage(srv.render.primary.rect)
    srv.render.flush()
    for r in readers:
        r.catch_up(srv)
        kinds = [m for m, _ in r.messages]
        assert MsgDisplay.SURFACE_DESTROY in kinds and kinds.count(MsgDisplay.SURFACE_CREATE) == 2
        assert kinds.count(MsgDisplay.MONITORS_CONFIG) == 2
        assert r.screen.surfaces[-1] == (320, 240)
        assert np.array_equal(r.screen.fb, srv.render.primary.pixels)
        # The new surface's content precedes its MARK: what the source painted, with no
        # black first and nothing after (a client shows the display at the MARK).
        after = kinds[len(kinds) - 1 - kinds[::-1].index(MsgDisplay.SURFACE_CREATE) :]
        assert after[-1] == MsgDisplay.MARK and after.count(MsgDisplay.MARK) == 1, after
        draws = [b for m, b in r.messages[len(kinds) - len(after) :] if m == MsgDisplay.DRAW_COPY]
        assert draws and sum(len(b) for b in draws) < 2 * 320 * 240 * 4  # one full picture, not two


def test_a_capture_thread_hands_frames_to_the_reactor():
    srv = make_server()
    r = Reader(*open_display(srv))
    handoff = FrameHandoff(srv.reactor, srv.render)
    calls = []
    srv.reactor.callFromThread = lambda fn, *a: calls.append((fn, a))  # the Clock has none
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (10, 10, 4), dtype=np.uint8) for _ in range(200)]

    def capture() -> None:
        for i, px in enumerate(frames):
            handoff.publish(Rect(i % 19 * 10, i % 9 * 10, i % 19 * 10 + 10, i % 9 * 10 + 10), px)

    thread = threading.Thread(target=capture)
    thread.start()
    thread.join()
    assert 1 <= len(calls) == handoff.wakeups  # a burst costs one wake-up, not one per frame
    for fn, a in calls:
        fn(*a)
    srv.render.flush()
    r.catch_up(srv)
    expect = np.zeros((H, W, 4), np.uint8)
    for i, px in enumerate(frames):
        expect[i % 9 * 10 : i % 9 * 10 + 10, i % 19 * 10 : i % 19 * 10 + 10] = px
    assert np.array_equal(srv.render.primary.pixels, expect)
    assert np.array_equal(r.screen.fb, expect)


def test_stall_is_counted_from_what_the_peer_read_not_from_our_writes():
    import time

    srv = make_server()
    cc, t = open_display(srv)
    r = Reader(cc, t)
    r.catch_up(srv)
    assert cc.stalled_for(time.monotonic() + 100) == 0.0  # nothing to send: never stalled
    cc.pauseProducing()  # Twisted's buffer is full: the peer is not reading
    paused_at = time.monotonic()
    for i in range(30):
        draw(srv, Rect(i, 0, i + 1, 1), i)  # queued behind the full transport
    assert cc.pipe and cc.stalled_for(paused_at + 100) >= 99
    cc.resumeProducing()  # the buffer drained: the peer read, the clock starts again
    assert cc.stalled_for(time.monotonic()) < 1
    # The ACK window closed with work waiting is a stall too, until an ACK comes.
    for i in range(80):
        draw(srv, Rect(i, 60, i + 1, 61), i)
    assert cc.waiting_for_ack and cc.pipe
    assert cc.stalled_for(time.monotonic() + 50) >= 49
    r.ack()
    assert cc.stalled_for(time.monotonic()) < 1
