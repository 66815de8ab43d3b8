"""The shared GLZ dictionary in process: generations, late joiners entering them, pinning, leaving.

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


class Calls(dict):
    """encoder -> the image ids it encoded; `encodes`: (image id, min_ref_id, oldest id referenced)."""

    def __init__(self) -> None:
        super().__init__()
        self.encodes: list[tuple[int, int, int | None]] = []


@pytest.fixture
def glz_calls(monkeypatch):
    calls = Calls()
    real = glz.GlzEncoder.encode

    def counted(self, pixels, image_id, min_ref_id=0):
        calls.setdefault(id(self), []).append(image_id)
        out = real(self, pixels, image_id, min_ref_id)
        calls.encodes.append((image_id, min_ref_id, self.last_oldest_ref))
        return out

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


def test_three_members_share_one_dictionary_and_late_joiners_enter_it(glz_calls):
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
    # Two late joiners, one after the other, enter the same generation: no encode more.
    everyone = list(readers)
    lates = []
    for start in (8, 12):
        late = Reader(*open_display(srv, GTK, glz_window=WINDOW))
        late.catch_up(srv)
        lates.append(late)
        everyone.append(late)
        for i in range(start, start + 4):
            _paint(srv, i)
            for r in everyone:
                r.catch_up(srv)
        assert late.cc.glz is gen and gen.base[late.cc] == start
    assert list(glz_calls.values()) == [list(range(16))]
    for r in readers:
        assert r.screen.glz_ids == list(range(16))
    # Each late joiner's ids run from 0 at its first image (its header is rebased; the
    # decoder's window is spice-gtk's, which fails on a reference it was not sent and on
    # a win_head_dist past the id).
    assert lates[0].screen.glz_ids == list(range(8)) and lates[1].screen.glz_ids == list(range(4))
    for r in everyone:
        _exact(srv, r)
    # No encode references an image below the newest member's first ...
    for image_id, min_ref, oldest in glz_calls.encodes:
        assert min_ref == (0 if image_id < 8 else 8 if image_id < 12 else 12)
        assert oldest is None or oldest >= min_ref
    # ... but the images after a joiner's first still reference earlier ones.
    assert any(oldest is not None for image_id, _, oldest in glz_calls.encodes if image_id in (9, 10, 11, 13, 14, 15))
    assert gen.joined == 2


def test_late_joiners_get_zlib_glz_deflated_per_first_image(glz_calls):
    """ZLIB-GLZ deflates the header too: one deflate per distinct first image among the
    members that take it, shared by the members that joined at the same image."""
    srv = make_server()
    first = [Reader(*open_display(srv, GTK, glz_window=WINDOW)) for _ in range(2)]
    first[0].cc.settings.zlib_glz_wan_compression = "always"  # (the settings are the server's)
    for r in first:
        r.catch_up(srv)
    everyone = list(first)
    for i in range(4):
        _paint(srv, i)
        for r in everyone:
            r.catch_up(srv)
    late = [Reader(*open_display(srv, GTK, glz_window=WINDOW)) for _ in range(2)]  # join together
    everyone += late
    for i in range(4, 10):
        _paint(srv, i)
        for r in everyone:
            r.catch_up(srv)
    for r in everyone:
        assert r.cc.glz is first[0].cc.glz
        _exact(srv, r)
        assert r.screen.image_types.get(T.ZLIB_GLZ_RGB, 0) >= 3, r.screen.image_types
    assert first[0].screen.glz_ids == list(range(10))
    assert late[0].screen.glz_ids == late[1].screen.glz_ids == list(range(6))
    assert [len(v) for v in glz_calls.values()] == [10]


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


def test_a_late_joiner_with_a_smaller_window_gets_a_generation_of_its_own(glz_calls):
    """The generation's window must fit in every member's: a smaller one starts its own."""
    srv = make_server()
    a = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    a.catch_up(srv)
    _paint(srv, 0)
    a.catch_up(srv)
    small = Reader(*open_display(srv, GTK, glz_window=WINDOW // 4))
    for i in range(1, 4):
        _paint(srv, i)
        for r in (a, small):
            r.catch_up(srv)
    assert small.cc.glz is not None and small.cc.glz is not a.cc.glz
    assert small.screen.glz_ids == [0, 1, 2] and a.screen.glz_ids == [0, 1, 2, 3]
    for r in (a, small):
        _exact(srv, r)


def test_generations_are_bounded(glz_calls):
    """Each generation holds a window of pixels: past MAX_GENERATIONS a newcomer gets LZ/LZ4."""
    from spice_twisted.render.glz_group import MAX_GENERATIONS

    srv = make_server()
    readers = []
    for i in range(MAX_GENERATIONS + 1):  # each its own dictionary id: none can join another's
        readers.append(Reader(*open_display(srv, GTK, glz_window=WINDOW, glz_dictionary=i + 1)))
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


def test_a_late_joiners_large_image_goes_out_with_its_own_header(glz_calls):
    """An image larger than a write chunk: the late joiner's header, then the shared rest
    in pieces (never joined into one copy per client); every client decodes it exactly."""
    from support.inprocess import Canvas

    from spice_twisted.channels.base import CHUNK

    class Big(Canvas):
        width, height = 400, 300

    srv = make_server(Big())
    first = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    first.catch_up(srv)
    _paint(srv, 0)
    first.catch_up(srv)
    late = Reader(*open_display(srv, GTK, glz_window=WINDOW))
    late.catch_up(srv)
    noise = np.random.default_rng(5).integers(0, 256, (300, 400, 4), dtype=np.uint8)
    srv.render.primary.pixels[:, :] = noise
    srv.render.damage(Rect(0, 0, 400, 300))
    srv.render.flush()
    for r in (first, late):
        r.catch_up(srv)
        _exact(srv, r)
    assert late.cc.glz is first.cc.glz and late.screen.glz_ids == [0] and first.screen.glz_ids == [0, 1]
    assert max(len(b) for t, b in late.messages) > CHUNK
    assert [len(v) for v in glz_calls.values()] == [2]
