"""COPY_BITS in-process: moves reach every pipe in order with the drawables around them.

Whatever mixes of damage, moves, frames, stalled readers, covering drawables and
collapsed pipes happen, each reader's independent decode (tests/support/display_decode.py
replays COPY_BITS from what it holds) ends equal to the server's surface.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.inprocess import H, Reader, W, draw, make_server, noise, open_display

from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import MsgDisplay


def _rects():
    return st.tuples(st.integers(0, W - 1), st.integers(0, H - 1), st.integers(1, W), st.integers(1, H)).map(
        lambda t: Rect(t[0], t[1], min(W, t[0] + t[2]), min(H, t[1] + t[3]))
    )


OPS = st.one_of(
    st.tuples(st.just("draw"), _rects(), st.integers(0, 255)),
    st.tuples(st.just("copy"), _rects(), st.tuples(st.integers(-W // 2, W), st.integers(-H // 2, H))),
    st.tuples(st.just("frame")),
    st.tuples(st.just("read"), st.integers(0, 2)),
    st.tuples(st.just("stall"), st.integers(0, 2)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=60), st.integers(2, 70))
def test_moves_and_draws_in_any_order_leave_every_reader_exact(ops, max_items):
    srv = make_server()
    srv.display_settings.max_items = max_items  # small pipes collapse into refreshes often
    noise(srv)
    readers = [Reader(*open_display(srv, cache_px=px)) for px in (0, 1 << 20, 5000)]  # no, a large, a small cache
    for r in readers:
        r.catch_up(srv)
    for op in ops:
        if op[0] == "draw":
            draw(srv, op[1], op[2], flush=False)
        elif op[0] == "copy":
            srv.render.copy_bits(op[1], *op[2])
        elif op[0] == "frame":
            srv.render.flush()
        elif op[0] == "stall":
            _stall(srv, readers[op[1]])
        else:
            readers[op[1]].read()  # reads what was written, never ACKs: that pipe falls behind
    srv.render.flush()
    for r in readers:
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
        assert set(r.cc.pixmap_cache.entries) == set(r.screen.cache)


def test_a_move_crosses_as_copy_bits_and_only_the_exposed_area_as_pixels():
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv))
    r.catch_up(srv)
    before = len(r.messages)
    render = srv.render
    render.copy_bits(Rect(10, 5, 160, 85), 50, 20)  # a 150x80 window moved by (40, 15)
    exposed = [Rect(10, 5, 160, 20), Rect(10, 20, 50, 85)]
    for e in exposed:
        render.primary.pixels[e.top : e.bottom, e.left : e.right] = 9
        render.damage(e)
    render.flush()
    r.catch_up(srv)
    after = r.messages[before:]
    kinds = [m for m, _ in after]
    assert kinds[0] == MsgDisplay.COPY_BITS and kinds.count(MsgDisplay.COPY_BITS) == 1, kinds
    drawn = sum(len(b) for m, b in after if m == MsgDisplay.DRAW_COPY)
    assert drawn < 4 * sum(e.area for e in exposed) + 200 * len(exposed)  # not the window's 150x80
    assert np.array_equal(r.screen.fb[..., :3], render.primary.pixels[..., :3])
    assert render.counters.copies == 1


def test_pending_damage_a_move_carries_is_sent_where_the_move_took_it():
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv))
    r.catch_up(srv)
    draw(srv, Rect(30, 30, 50, 50), 200, flush=False)  # damage marked, no frame yet
    srv.render.copy_bits(Rect(20, 20, 60, 60), 100, 40)  # moves the area just drawn
    srv.render.flush()
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    assert np.all(srv.render.primary.pixels[50:70, 110:130, :3] == 200)  # the drawn square, moved


def _stall(srv, r: Reader) -> None:
    """Fill the client's ACK window (nothing is ACKed) so what follows waits in its pipe."""
    for i in range(200):
        if len(r.cc.pipe) >= 3 or r.cc.pipe.refresh is not None:
            return
        draw(srv, Rect(i % 10 * 20, 90, i % 10 * 20 + 5, 95), i)
        r.read()
    raise AssertionError("the pipe never filled")


def test_a_drawable_queued_before_a_move_is_not_dropped_by_one_covering_it_after():
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv))
    r.catch_up(srv)
    _stall(srv, r)
    draw(srv, Rect(10, 10, 30, 30), 50)  # queued
    srv.render.copy_bits(Rect(10, 10, 30, 30), 100, 10)  # reads it
    draw(srv, Rect(0, 0, 40, 40), 60)  # covers it: it must still go before the move
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    assert np.all(r.screen.fb[10:30, 100:120, :3] == 50)


def test_a_move_that_is_drawn_over_is_dropped_unsent():
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv))
    r.catch_up(srv)
    _stall(srv, r)
    srv.render.copy_bits(Rect(10, 10, 30, 30), 100, 10)
    draw(srv, Rect(90, 0, 150, 50), 70)  # over everything the move wrote
    r.catch_up(srv)
    assert r.screen.copies == 0
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_move_in_a_paint_hook_leaves_damage_marked_for_that_hook_to_paint():
    """Damage may be marked before its pixels are painted (the demo marks a stroke at input
    and paints it in its paint hook); a move made earlier in the same frame must not send
    those pixels before they are painted."""
    srv = make_server()
    noise(srv)
    r = Reader(*open_display(srv))
    r.catch_up(srv)
    stroke = Rect(120, 60, 180, 70)
    state = {"paint": False}

    def hook() -> None:
        srv.render.copy_bits(Rect(0, 0, 40, 30), 10, 5)  # a scroll first, as the demo's log does
        if state["paint"]:
            srv.render.primary.pixels[stroke.top : stroke.bottom, stroke.left : stroke.right] = 123

    srv.render.add_paint_hook(hook)
    state["paint"] = True
    srv.render.damage(stroke)  # marked now, painted by the hook
    srv.render.flush()
    r.catch_up(srv)
    assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
