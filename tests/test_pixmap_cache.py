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


def _distinct_tile(i: int) -> np.ndarray:
    return np.random.default_rng(1000 + i).integers(0, 256, (20, 30, 4), dtype=np.uint8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, len(SLOTS) - 1)), min_size=10, max_size=80), st.integers(3, 12))
def test_every_clients_model_together_stays_in_the_server_wide_budget(shows, total):
    """Issue 16 item 9: what one client's add takes from another's model is told to that
    client, so every model still mirrors its client, and the sum never passes the budget."""
    srv = make_server()
    budget = srv.display_settings.pixmap_caches
    budget.total, budget.per_client = total, 8
    noise(srv)
    readers = [Reader(*open_display(srv, cache_px=1 << 20)) for _ in range(3)]
    for step, (tile, slot) in enumerate(shows):
        r = SLOTS[slot]
        srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = _distinct_tile(tile)
        srv.render.damage(r)
        srv.render.flush()
        srv.reactor.advance(0)  # the INVAL_LISTs of entries taken from other clients
        for reader in readers[: 1 + step % 3]:  # the clients read at different paces
            reader.catch_up(srv)
        assert budget.entries == sum(len(rd.cc.pixmap_cache) for rd in readers) <= total
    for _ in range(2):  # one reader's last adds may take from another already caught up
        srv.reactor.advance(0)
        for reader in readers:
            reader.catch_up(srv)
    for reader in readers:
        assert np.array_equal(reader.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
        assert set(reader.cc.pixmap_cache.entries) == set(reader.screen.cache)
        assert len(reader.screen.cache) <= 8
    assert sum(len(rd.screen.cache) for rd in readers) <= total


def test_a_new_clients_adds_take_the_oldest_entries_of_the_largest_model():
    srv = make_server()
    budget = srv.display_settings.pixmap_caches
    budget.total, budget.per_client = 10, 8
    noise(srv)
    first = Reader(*open_display(srv, cache_px=1 << 20))
    for i in range(12):
        _show_distinct(srv, i)
    first.catch_up(srv)
    assert len(first.screen.cache) == 8  # its own cap
    second = Reader(*open_display(srv, cache_px=1 << 20))
    second.catch_up(srv)
    for i in range(12, 18):
        _show_distinct(srv, i)
        srv.reactor.advance(0)
        first.catch_up(srv)
        second.catch_up(srv)
    assert budget.taken > 0 and len(first.screen.cache) + len(second.screen.cache) == 10
    for r in (first, second):
        assert set(r.cc.pixmap_cache.entries) == set(r.screen.cache)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    second.cc.connectionLost(None)  # a client gone gives its entries back
    assert budget.entries == len(first.cc.pixmap_cache)


def _show_distinct(srv, i: int) -> None:
    r = SLOTS[i % len(SLOTS)]
    srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = _distinct_tile(i)
    srv.render.damage(r)
    srv.render.flush()
