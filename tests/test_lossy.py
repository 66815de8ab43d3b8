"""Lossy images in-process: JPEG only for clients allowed it, only where it pays, one encode
shared; what each client holds lossy is tracked and made exact once the area is quiet.

The render service runs on a twisted Clock, so "quiet for LOSSLESS_AFTER seconds" is
the test's to decide; every reader decodes independently (JPEG with Pillow).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from support.images import photo, psnr, text_ui
from support.inprocess import Reader, draw, make_server, noise, open_display

from spice_twisted import codecs
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import DisplayCap, ImageType, MsgDisplay

LZ4_CAPS = {DisplayCap.LZ4_COMPRESSION}
PHOTO = Rect(20, 10, 180, 90)  # 160x80: big enough for lossy to pay


def _paste(srv, r: Rect, px: np.ndarray) -> None:
    srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = px
    srv.render.damage(r)
    srv.render.flush()


def _counting(monkeypatch) -> dict[str, int]:
    calls: dict[str, int] = {}
    for name, fn in list(codecs.ENCODERS.items()):

        def counted(px, _fn=fn, _name=name):
            calls[_name] = calls.get(_name, 0) + 1
            return _fn(px)

        monkeypatch.setitem(codecs.ENCODERS, name, counted)
    return calls


def _lossy_server(setting: str = "always"):
    srv = make_server()
    srv.display_settings.jpeg_wan_compression = setting
    noise(srv)
    return srv


def _new_types(r: Reader, start: int) -> list[int]:
    return [m for m, _ in r.messages[start:]]


def test_jpeg_clients_share_one_encode_and_converge_to_exact(monkeypatch):
    srv = _lossy_server()
    jpeg_readers = [Reader(*open_display(srv, LZ4_CAPS)) for _ in range(2)]
    exact = Reader(*open_display(srv, LZ4_CAPS))
    for r in (*jpeg_readers, exact):
        r.catch_up(srv)
    exact.cc.settings = dataclasses.replace(srv.display_settings, jpeg_wan_compression="never")  # lossy for the others
    calls = _counting(monkeypatch)
    for seed in range(3):  # the display changes
        _paste(srv, PHOTO, photo(PHOTO.height, PHOTO.width, seed))
        for r in (*jpeg_readers, exact):
            r.catch_up(srv)
        fb = srv.render.primary.pixels
        assert np.array_equal(exact.screen.fb[..., :3], fb[..., :3])  # the lossless client is exact throughout
        for r in jpeg_readers:
            q = psnr(r.screen.fb[10:90, 20:180], fb[10:90, 20:180])
            assert 35 <= q < float("inf"), q  # lossy, and good
    assert calls.get("jpeg") == 3 and calls.get("quic") == 3  # one of each a frame (QUIC: a photo, lossless), not one a client
    assert all(r.screen.image_types.get(ImageType.JPEG) == 3 for r in jpeg_readers)
    assert ImageType.JPEG not in exact.screen.image_types
    assert all(r.cc.lossy.area == PHOTO.area for r in jpeg_readers) and not exact.cc.lossy
    marks = [len(r.messages) for r in (*jpeg_readers, exact)]
    srv.reactor.advance(0.6)  # quiet for LOSSLESS_AFTER
    for r in (*jpeg_readers, exact):
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    assert calls["quic"] == 4  # the upgrade: one lossless encode for both lossy clients
    assert not any(r.cc.lossy for r in jpeg_readers)
    assert MsgDisplay.DRAW_COPY not in _new_types(exact, marks[2])  # nothing resent to the exact one


def test_text_and_ui_stay_lossless_for_a_lossy_client():
    srv = _lossy_server()
    r = Reader(*open_display(srv, LZ4_CAPS))
    r.catch_up(srv)
    _paste(srv, PHOTO, text_ui(PHOTO.height, PHOTO.width))
    r.catch_up(srv)
    assert ImageType.JPEG not in r.screen.image_types and not r.cc.lossy
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_an_area_that_keeps_changing_stays_lossy_until_it_is_quiet():
    srv = _lossy_server()
    r = Reader(*open_display(srv, LZ4_CAPS))
    r.catch_up(srv)
    for seed in range(6):
        _paste(srv, PHOTO, photo(PHOTO.height, PHOTO.width, seed))
        srv.reactor.advance(0.3)  # changes faster than LOSSLESS_AFTER
        r.catch_up(srv)
        assert r.cc.lossy
    srv.reactor.advance(0.6)
    r.catch_up(srv)
    assert not r.cc.lossy and np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_lossy_area_moved_by_copy_bits_is_tracked_and_made_exact():
    srv = _lossy_server()
    r = Reader(*open_display(srv, LZ4_CAPS))
    r.catch_up(srv)
    _paste(srv, PHOTO, photo(PHOTO.height, PHOTO.width, 9))
    r.catch_up(srv)
    srv.render.copy_bits(Rect(20, 10, 100, 50), 110, 50)  # part of the lossy picture moves
    srv.render.flush()
    r.catch_up(srv)
    assert r.screen.copies == 1
    assert r.cc.lossy.contains_rect(Rect(110, 50, 190, 90))  # where the lossy pixels went
    srv.reactor.advance(0.6)
    r.catch_up(srv)
    assert not r.cc.lossy and np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_cached_lossy_picture_is_dropped_then_cached_lossless_for_a_lossless_draw():
    srv = _lossy_server()
    r = Reader(*open_display(srv, LZ4_CAPS, cache_px=1 << 20))
    r.catch_up(srv)
    pic = photo(PHOTO.height, PHOTO.width, 4)
    _paste(srv, PHOTO, pic)
    r.catch_up(srv)
    key = list(r.screen.cache)[-1]  # the picture (the first is the initial screen)
    assert r.screen.cache[key][1]  # held lossy
    srv.reactor.advance(0.6)  # the upgrade draws the same rect, the same picture, lossless:
    r.catch_up(srv)  # the client drops the lossy entry (INVAL_LIST), then caches it lossless
    assert not r.screen.cache[key][1] and not r.cc.pixmap_cache.entries[key].lossy
    assert MsgDisplay.INVAL_LIST in [m for m, _ in r.messages]
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    _paste(srv, Rect(0, 0, 160, 80), pic)  # the picture again, elsewhere: from the cache
    r.catch_up(srv)
    assert r.screen.cache_hits == 1 and np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_lossy_client_that_joins_is_made_exact_where_quiet_while_the_source_keeps_marking_damage():
    """Issue 16 item 5: the upgrade must neither wait for a frame that draws (a still display)
    nor give way to damage that is always pending (a busy corner at 1 frame a second)."""
    srv = make_server(max_fps=1)
    srv.display_settings.jpeg_wan_compression = "always"
    full = Rect(0, 0, 200, 100)
    _paste(srv, full, photo(full.height, full.width, 5))  # the whole screen photo-like, then still
    srv.reactor.advance(2)
    r = Reader(*open_display(srv, LZ4_CAPS))
    r.catch_up(srv)
    assert ImageType.JPEG in r.screen.image_types and r.cc.lossy  # it joined lossy
    corner = Rect(180, 80, 200, 100)
    for step in range(10):  # damage marked every 0.1 s, committed once a second
        draw(srv, corner, step * 20, flush=False)
        srv.reactor.advance(0.1)
        r.catch_up(srv)
    assert not r.cc.lossy.intersects(Rect(0, 0, 160, 64))  # the quiet part made lossless
    fb = srv.render.primary.pixels
    assert np.array_equal(r.screen.fb[:64, :160, :3], fb[:64, :160, :3])


def test_a_lossy_client_that_is_never_idle_is_still_made_exact_where_quiet():
    """Issue 16 item 5, "whatever the display does": a client whose pipe always holds something
    (its ACK window stays shut while a corner keeps drawing) still gets its quiet areas
    lossless; the upgrade does not wait for it to be idle."""
    srv = make_server()
    srv.display_settings.jpeg_wan_compression = "always"
    full = Rect(0, 0, 200, 100)
    _paste(srv, full, photo(full.height, full.width, 5))
    srv.reactor.advance(2)
    r = Reader(*open_display(srv, LZ4_CAPS))
    r.catch_up(srv)
    assert ImageType.JPEG in r.screen.image_types and r.cc.lossy  # it joined lossy
    corner = Rect(180, 80, 200, 100)
    for step in range(1000):  # the client reads but does not ACK: its window shuts
        if not r.cc.idle:
            break
        draw(srv, corner, step % 256)
        r.read()
    busy = 0
    for step in range(60):  # 6 s of the corner drawn every 0.1 s
        draw(srv, corner, step * 4)
        srv.reactor.advance(0.1)
        r.read()
        busy += not r.cc.idle
    assert busy == 60, busy  # something was always left to send: never idle
    start = len(r.messages)
    r.catch_up(srv)  # ACK: what was queued arrives, the clock stands still (no new upgrade)
    quiet = Rect(0, 0, 160, 64)
    assert any(t != MsgDisplay.MARK for t, _ in r.messages[start:])
    assert not r.cc.lossy.intersects(quiet)
    fb = srv.render.primary.pixels
    assert np.array_equal(r.screen.fb[:64, :160, :3], fb[:64, :160, :3])
