"""The pixmap cache and COPY_BITS with real spice-gtk clients, watched on the wire by taps.

spice-gtk blocks its display channel for good on a FROM_CACHE of an id it does not
hold, so a client that stays exact through evictions shows the server's model of its
cache is right; the tap shows what crossed the wire (by reference, by move).
"""

from __future__ import annotations

import time

import numpy as np
from support.processes import as_rgb, wait_match
from support.tapped import connect

from spice_twisted.wire.enums import ChannelType, ImageFlags, ImageType, MsgDisplay
from spice_twisted.wire.messages import decode_body, message

INVAL_LIST = message(ChannelType.DISPLAY, "INVAL_LIST")

TILE_W, TILE_H = 40, 30


def _tiles(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        px = np.random.default_rng(100 + i).integers(0, 256, (TILE_H, TILE_W, 4), dtype=np.uint8)
        px[..., 3] = 0
        path = tmp_path / f"tile{i}.npy"
        np.save(path, px)
        paths.append(str(path))
    return paths


def _exact(server, clients, conns) -> None:
    # Polls: a client may not have drawn what is on its way yet ("quiet" cannot tell).
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    fb = server.framebuffer()
    for conn in conns:
        screen = conn.screen()
        assert np.array_equal(screen.fb[..., :3], fb[..., :3]), f"{conn}: the tap's decode differs"


def test_a_repeated_image_crosses_by_reference(spawn, tap_for, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    tile = _tiles(tmp_path, 1)[0]
    marks = [c.mark() for c in conns]
    server.command(f"paste {tile} 10 10", "paste")
    server.command(f"paste {tile} 200 100", "paste")  # the same picture elsewhere
    server.command(f"paste {tile} 120 150", "paste")
    for c in conns:
        c.wait_for(lambda k: len([d for d in k.draws() if d.box[0] == 120]) >= 1, what="the third paste")
    _exact(server, clients, conns)
    for conn, mark in zip(conns, marks, strict=True):
        draws = [d for d in conn.draws(mark) if (d.box[2] - d.box[0], d.box[3] - d.box[1]) == (TILE_W, TILE_H)]
        assert [d.image_type for d in draws][1:] == [ImageType.FROM_CACHE] * 2, draws
        assert draws[0].image_flags & ImageFlags.CACHE_ME and len(draws[0].payload) > 1000
        assert {d.image_id for d in draws} == {draws[0].image_id} and all(not d.payload for d in draws[1:])


def test_a_small_cache_stays_exact_under_eviction(spawn, tap_for, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    budget = 3 * TILE_W * TILE_H  # three tiles' pixels
    small = connect(server, tap_for, 1, "--cache-size", str(4 * budget))
    large = connect(server, tap_for, 1)
    clients, conns = small[1] + large[1], small[2] + large[2]
    tiles = _tiles(tmp_path, 6)
    rng = np.random.default_rng(7)
    mark = conns[0].mark()
    for _ in range(40):
        t = int(rng.integers(0, len(tiles)))
        x, y = int(rng.integers(0, 7)) * TILE_W, int(rng.integers(0, 5)) * TILE_H
        server.command(f"paste {tiles[t]} {x} {y}", "paste")
    server.command("flush", "flush")
    # (pastes on one spot may coalesce in a pipe: compare once every client is quiet)
    _exact(server, clients, conns)
    kinds = [t for t, _ in conns[0].snapshot(mark)]
    draws = conns[0].draws(mark)
    assert MsgDisplay.INVAL_LIST in kinds  # it evicted, and said so
    assert sum(d.image_type == ImageType.FROM_CACHE for d in draws) >= 5  # and still hit
    screen = conns[0].screen()
    assert screen.cache_used() <= budget


def test_a_move_crosses_as_copy_bits(spawn, tap_for, random_image):
    path, rgb = random_image
    server = spawn.harness("--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    marks = [c.mark() for c in conns]
    r = server.command("copy 10 10 210 160 60 40", "copy")  # a 200x150 area moved by (50, 30)
    assert r["copies"] == 1
    for c in conns:
        c.wait_for(lambda k: any(t == MsgDisplay.COPY_BITS for t, _ in k.snapshot()), what="COPY_BITS")
    _exact(server, clients, conns)
    fb = as_rgb(clients[0].framebuffer())
    assert np.array_equal(fb[40:190, 60:260], rgb[10:160, 10:210])  # the moved picture, where it went
    for conn, mark in zip(conns, marks, strict=True):
        assert not conn.draws(mark)  # the move exposed nothing the picture did not already hold


def _held(conn) -> set[int]:
    """The ids a client holds, counted on the wire: CACHE_ME adds one, INVAL_LIST drops."""
    return set(conn.screen().cache)


def _held_within(conns, total: int, timeout: float = 10.0) -> list[set[int]]:
    """What each client holds once the INVAL_LISTs on their way have crossed: an eviction
    is told in a reactor turn after the image that caused it, which another client's
    send turn may write. Polls until the total is within `total` (or the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        held = [_held(c) for c in conns]
        if sum(len(h) for h in held) <= total or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


def test_every_clients_cache_model_together_stays_in_the_server_wide_budget(spawn, tap_for, random_image, tmp_path):
    """Issue 16 item 9, with bounds made small (total 12, 8 a client): one client fills its
    share; two more join and their images take the oldest entries of the largest model,
    whose client is told by INVAL_LIST; every client stays exact throughout."""
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    server.command("pixmap_cache_entries 12 8", "pixmap_cache_entries")
    tiles = _tiles(tmp_path, 24)
    spots = [(x * TILE_W, y * TILE_H) for y in range(7) for x in range(8)]
    taps, clients, conns = connect(server, tap_for, 1)

    def paste(first: int, last: int) -> None:
        for i in range(first, last):
            x, y = spots[i % len(spots)]
            server.command(f"paste {tiles[i]} {x} {y}", "paste")
        server.command("flush", "flush")
        _exact(server, clients, conns)

    paste(0, 12)
    one = _held(conns[0])
    assert len(one) == 8  # one client: its own share, no more
    more = connect(server, tap_for, 2)
    clients, conns = clients + more[1], conns + more[2]
    mark = conns[0].mark()
    paste(12, 24)
    held = _held_within(conns, 12)
    assert all(len(h) <= 8 for h in held) and sum(len(h) for h in held) <= 12, [len(h) for h in held]
    assert sum(len(h) for h in held) >= 10  # the budget is used, not emptied
    invalidated = [
        r["id"] for t, body in conns[0].snapshot(mark) if t == MsgDisplay.INVAL_LIST for r in decode_body(INVAL_LIST, body)["resources"]
    ]
    assert set(invalidated) & one  # the first client's old entries went to the others
    paste(0, 24)  # everything again: FROM_CACHE only of what each still holds
    assert sum(len(h) for h in _held_within(conns, 12)) <= 12
