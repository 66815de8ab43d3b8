"""The pixmap cache in-process: repeats cross once, the model mirrors the client exactly.

Each reader decodes like a client (tests/support/display_decode.py): it keeps what
CACHE_ME stored, fails on a FROM_CACHE or INVAL_LIST of an id it does not hold, and
drops what INVAL_LIST names. The server's model is checked against that, not itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.inprocess import Reader, make_server, noise, open_display

from spice_twisted.channels.pixmap_cache import ClientPixmapCache
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import ImageType, MsgDisplay

TILES = [np.random.default_rng(i).integers(0, 256, (20, 30, 4), dtype=np.uint8) for i in range(6)]
SLOTS = [Rect(x, y, x + 30, y + 20) for x in (0, 40, 80, 120) for y in (0, 30, 60)]


def _show(srv, tile: int, slot: int) -> None:
    r = SLOTS[slot]
    srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = TILES[tile]
    srv.render.damage(r)
    srv.render.flush()


def test_a_repeated_image_crosses_once_then_by_reference():
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv, cache_px=1 << 20))
    r.catch_up(srv)
    _show(srv, 0, 0)
    r.catch_up(srv)
    first = len(r.messages)
    for slot in (1, 2, 3):
        _show(srv, 0, slot)  # the same picture elsewhere
    _show(srv, 1, 0)
    _show(srv, 0, 0)  # and back where it was
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    draws = [b for m, b in r.messages[first:] if m == MsgDisplay.DRAW_COPY]
    assert r.screen.image_types.get(ImageType.FROM_CACHE) == 4
    assert sum(len(b) < 100 for b in draws) == 4  # descriptor only, no pixels
    cache = r.cc.pixmap_cache
    assert cache.hits == 4 and set(cache.entries) == set(r.screen.cache)


def test_no_cache_without_a_budget():
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv, cache_px=0))
    r.catch_up(srv)
    for slot in range(4):
        _show(srv, 0, slot)
    r.catch_up(srv)
    assert ImageType.FROM_CACHE not in r.screen.image_types and not r.screen.cache


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(TILES) - 1), st.integers(0, len(SLOTS) - 1)), max_size=60), st.integers(600, 4000))
def test_a_small_cache_evicts_and_the_model_mirrors_the_client(shows, budget):
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv, cache_px=budget))  # room for 1 to 6 tiles of 600 pixels
    r.catch_up(srv)
    for tile, slot in shows:
        _show(srv, tile, slot)
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    cache = r.cc.pixmap_cache
    assert set(cache.entries) == set(r.screen.cache)
    assert r.screen.cache_used() <= budget


def test_the_model_lru_and_its_bounds():
    c = ClientPixmapCache(1, 1000, max_entries=3)
    assert c.takes(1000) and not c.takes(1001) and not c.takes(0)
    assert c.add(1, 400, False) == [] and c.add(2, 400, False) == []
    c.hit(1, 10)  # 2 is now the oldest
    assert c.add(3, 400, False) == [2]
    assert c.add(4, 10, True) == [] and c.add(5, 10, False) == [1]  # max_entries
    assert c.remove(4) == 4 and c.lookup(4) is None and c.used == 410
    assert not ClientPixmapCache(1, -5) and not ClientPixmapCache(1, -5).takes(1)


def test_wire_ids_are_32_bits_and_a_clash_is_not_cached():
    c = ClientPixmapCache(1, 1000)
    a, b = (7 << 40) | 0x1234, (9 << 40) | 0x1234  # the same low 32 bits
    assert c.add(a, 10, False) == [] and list(c.entries) == [0x1234]
    assert c.lookup(b) is None and not c.id_free(b) and c.id_free(a)


def test_a_repeat_the_client_holds_costs_no_encode(monkeypatch):
    from spice_twisted import codecs

    calls = []
    real = codecs.ENCODERS["bitmap"]
    monkeypatch.setitem(codecs.ENCODERS, "bitmap", lambda px: calls.append(px.shape) or real(px))
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv, cache_px=1 << 20))
    r.catch_up(srv)
    _show(srv, 2, 0)
    r.catch_up(srv)
    before = len(calls)
    for slot in (1, 2, 3, 4):
        _show(srv, 2, slot)
        r.catch_up(srv)
    assert len(calls) == before  # four draws, no encode: each went FROM_CACHE
    assert r.screen.cache_hits == 4 and np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


@pytest.mark.parametrize("budget", [-(2**63), -1, 0, 1, 599, 600, 2**62, 2**63 - 1])
def test_any_budget_a_client_claims_is_served_exactly(budget):
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv, cache_px=budget))
    r.catch_up(srv)
    for i in range(30):
        _show(srv, i % len(TILES), (i * 5) % len(SLOTS))
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    cache = r.cc.pixmap_cache
    assert set(cache.entries) == set(r.screen.cache) and len(cache) <= len(TILES) + 1
    assert r.screen.cache_used() <= max(budget, 0)
