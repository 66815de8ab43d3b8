"""The shared GLZ dictionary in process: generations, pinning, leaving, late joiners.

Every client's stream is decoded independently (tests/support/display_decode.py keeps a
GLZ window per client, as spice-gtk does, and fails on a reference to an image it was
not sent); encodes are counted at the codec boundary, `GlzEncoder.encode`.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.images import text_ui
from support.inprocess import Reader, W, make_server, open_display

from spice_twisted.codecs import glz
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import DisplayCap
from spice_twisted.wire.enums import ImageType as T

WINDOW = 4 << 20
GTK = {DisplayCap.LZ4_COMPRESSION, DisplayCap.COMPOSITE, DisplayCap.A8_SURFACE}


@pytest.fixture
def glz_calls(monkeypatch):
    calls: dict[int, list[int]] = {}  # encoder -> image ids
    real = glz.GlzEncoder.encode

    def counted(self, pixels, image_id, min_ref_id=0):
        calls.setdefault(id(self), []).append(image_id)
        return real(self, pixels, image_id, min_ref_id)

    monkeypatch.setattr(glz.GlzEncoder, "encode", counted)
    return calls


def _paint(srv, i: int) -> None:
    """Text-like content that moves: each frame repeats much of earlier frames."""
    px = text_ui(40, 150)
    y = 5 + (i * 7) % 30
    srv.render.primary.pixels[y : y + 40, 20:170] = np.roll(px, i * 3, axis=1)
    srv.render.damage(Rect(20, y, 170, y + 40))
    srv.render.flush()


def _exact(srv, r: Reader) -> None:
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_three_members_share_one_dictionary_and_a_late_joiner_gets_its_own(glz_calls):
    srv = make_server()
    readers = [Reader(*open_display(srv, GTK, glz_window=WINDOW)) for _ in range(3)]
    html5 = Reader(*open_display(srv))  # no GLZ window: never GLZ
    for r in (*readers, html5):
        r.catch_up(srv)
    for i in range(8):
        _paint(srv, i)
        for r in (*readers, html5):
            r.catch_up(srv)
    gens = {r.cc.glz for r in readers}
    assert len(gens) == 1 and None not in gens
    (gen,) = gens
    # One encode per image for all three members: one encoder, ids 0.. in order.
    assert list(glz_calls.values()) == [list(range(8))]
    for r in readers:
        assert r.screen.glz_ids == list(range(8))  # every id, from 0, no hole
        assert r.screen.image_types.get(T.GLZ_RGB) == 8
        _exact(srv, r)
    assert T.GLZ_RGB not in html5.screen.image_types
    _exact(srv, html5)
    # A late joiner starts a generation of its own (its window needs ids from 0).
    late = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    late.catch_up(srv)
    for i in range(8, 12):
        _paint(srv, i)
        for r in (*readers, late):
            r.catch_up(srv)
    assert late.cc.glz is not None and late.cc.glz is not gen
    assert late.screen.glz_ids == list(range(4))
    for r in (*readers, late):
        _exact(srv, r)
    assert sorted(len(v) for v in glz_calls.values()) == [4, 12]


def test_a_slow_member_leaves_and_coalesces_while_the_others_stay_exact(glz_calls):
    srv = make_server()
    fast = [Reader(*open_display(srv, GTK, glz_window=WINDOW)) for _ in range(2)]
    slow = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    for r in (*fast, slow):
        r.catch_up(srv)
    _paint(srv, 0)
    for r in (*fast, slow):
        r.catch_up(srv)
    gen = slow.cc.glz
    assert gen is not None and all(r.cc.glz is gen for r in fast)
    for i in range(1, 150):  # the slow one stops reading: its pipe fills up and collapses
        _paint(srv, i)
        x = (i * 13) % (W - 40)
        srv.render.primary.pixels[80:95, x : x + 40] = (i, 255 - i, i // 2, 0)
        srv.render.primary.pixels[80:95:2, x : x + 40, 1] = 7
        srv.render.damage(Rect(x, 80, x + 40, 95))
        srv.render.flush()
        for r in fast:
            r.catch_up(srv)
    assert slow.cc.glz is None and slow.cc.pipe.collapses >= 1  # it left, then dropped freely
    assert all(r.cc.glz is gen for r in fast)
    for r in fast:
        assert r.screen.glz_ids == list(range(len(r.screen.glz_ids))) and len(r.screen.glz_ids) > 100
        _exact(srv, r)
    _exact(srv, slow)  # it decodes what it got: the GLZ ids it has, then LZ/LZ4 and refreshes
    assert slow.screen.glz_ids == list(range(len(slow.screen.glz_ids)))
    assert len(glz_calls) == 1  # still one dictionary: the others did not pay for the slow one


def test_a_member_that_prefers_another_codec_leaves(glz_calls):
    import struct

    from spice_twisted.wire.enums import ImageCompression, MsgcDisplay

    srv = make_server()
    a, b = (Reader(*open_display(srv, GTK, glz_window=WINDOW)) for _ in range(2))
    for r in (a, b):
        r.catch_up(srv)
    _paint(srv, 0)
    b.cc.dataReceived(struct.pack("<HIB", MsgcDisplay.PREFERRED_COMPRESSION, 1, ImageCompression.LZ))
    for i in range(1, 4):
        _paint(srv, i)
    for r in (a, b):
        _exact(srv, r)
    assert a.cc.glz is not None and b.cc.glz is None
    assert b.screen.image_types.get(T.LZ_RGB, 0) >= 3 and a.screen.glz_ids == [0, 1, 2, 3]


def test_a_members_pipe_never_drops_a_glz_image_it_covers(glz_calls):
    """Covered drawables are dropped from a pipe (coalescing), but not a member's GLZ images:
    every member must receive every id of its generation."""
    srv = make_server()
    behind = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    other = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    for r in (behind, other):
        r.catch_up(srv)
    for i in range(60):  # fill behind's ACK window with small draws, so the rest waits in its pipe
        srv.render.primary.pixels[90, i, :3] = 200
        srv.render.damage(Rect(i, 90, i + 1, 91))
        srv.render.flush()
        other.catch_up(srv)
    for i in range(6):  # the same area again and again: each covers the one before
        px = text_ui(40, 150)
        srv.render.primary.pixels[10:50, 20:170] = np.roll(px, i * 5, axis=1)
        srv.render.damage(Rect(20, 10, 170, 50))
        srv.render.flush()
        other.catch_up(srv)
    assert behind.cc.glz is other.cc.glz is not None
    assert behind.cc.coalesced == 0  # nothing of it was dropped ...
    _exact(srv, behind)
    assert behind.screen.glz_ids == other.screen.glz_ids == list(range(6))  # ... and every id arrived


def test_generations_are_bounded(glz_calls):
    """Each generation holds a window of pixels: past MAX_GENERATIONS a newcomer gets LZ/LZ4."""
    from spice_twisted.render.glz_group import MAX_GENERATIONS

    srv = make_server()
    readers = []
    for i in range(MAX_GENERATIONS + 1):  # each comes after the previous one's first frame
        readers.append(Reader(*open_display(srv, GTK, glz_window=WINDOW)))
        _paint(srv, i)
        for r in readers:
            r.catch_up(srv)
    assert len(srv.render.glz.generations) == MAX_GENERATIONS and srv.render.glz.refused == 1
    assert readers[-1].cc.glz is None and not readers[-1].screen.glz_ids
    for r in readers:
        _exact(srv, r)


def test_a_repeat_a_member_caches_is_not_a_glz_image(glz_calls):
    """The pixmap cache goes first: a picture a member's cache holds goes FROM_CACHE to it,
    and so it is not made an image of the generation (the other members get it their way)."""
    srv = make_server()
    a, b = (Reader(*open_display(srv, GTK, cache_px=1 << 20, glz_window=WINDOW)) for _ in range(2))
    for r in (a, b):
        r.catch_up(srv)
    tile = text_ui(30, 40)
    for x in (10, 60, 110):  # the same picture three times
        srv.render.primary.pixels[20:50, x : x + 40] = tile
        srv.render.damage(Rect(x, 20, x + 40, 50))
        srv.render.flush()
        for r in (a, b):
            r.catch_up(srv)
    for r in (a, b):
        assert r.screen.glz_ids == [0]  # the first, cached along the way
        assert r.screen.cache_hits == 2
        _exact(srv, r)
    assert [len(v) for v in glz_calls.values()] == [1]
