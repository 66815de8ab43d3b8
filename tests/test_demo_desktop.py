"""The demo desktop's window, log and repeated pictures: moved and scrolled by copy_bits plus
only the exposed area, always equal to a from-scratch composition of its layers, and
repeats that are byte-identical."""

from __future__ import annotations

import random
import time

import numpy as np
from support.processes import as_rgb, assert_clients_match, wait_until
from twisted.internet.task import Clock

from spice_twisted.inputs import InputOrigin
from spice_twisted.render.cursor import CursorService
from spice_twisted.render.rect import Rect
from spice_twisted.render.service import RenderService
from spice_twisted.sources.demo import BAR_H, CLOCK_BOX, HEIGHT, ICONS, TEXT_BOX, WELCOME, WIDTH, DemoSource, draw_backdrop
from spice_twisted.sources.demo_log import LINE_H, LINES
from spice_twisted.sources.demo_pictures import SLIDES, icon, slide
from spice_twisted.sources.demo_window import LOG, SLIDE, TITLE_H, WIN_H, WIN_W, frame_pixels, subtract, window_pixels

A, B, C = InputOrigin(1, (255, 0, 0)), InputOrigin(2, (0, 200, 0)), InputOrigin(3, (0, 0, 255))
ENTER, H_KEY, I_KEY = 0x1C, 0x23, 0x17


class Recorder:
    """The calls the source makes at the render service's boundary (copy_bits, damage)."""

    def __init__(self, render: RenderService) -> None:
        self.calls: list[tuple] = []
        self._in_copy = False
        copy_bits, damage = render.copy_bits, render.damage

        def rec_copy(src: Rect, x: int, y: int) -> None:
            self.calls.append(("copy", src, x, y))
            self._in_copy = True
            try:
                copy_bits(src, x, y)
            finally:
                self._in_copy = False

        def rec_damage(r: Rect) -> None:
            if not self._in_copy:  # the service's own damage of the destination is its business
                self.calls.append(("damage", r))
            damage(r)

        render.copy_bits, render.damage = rec_copy, rec_damage

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls


def _demo(paused: bool = True):
    clock = Clock()
    src = DemoSource(clock=clock)
    render = RenderService(src.width, src.height, clock)
    src.start(render, CursorService())
    render.flush()
    src.paused = paused
    return src, render, clock, Recorder(render)


def expected_screen(src: DemoSource) -> np.ndarray:
    """The screen from scratch: the desktop layer, the ball on it, and the window drawn anew
    from its log lines and slide number on top (none of the incremental paths)."""
    out = src.desktop.copy()
    x, y = int(src.pos[0]), int(src.pos[1])
    sprite = src.ball
    under = out[y : y + sprite.shape[0], x : x + sprite.shape[1]]
    under[:] = np.where(sprite >= 0, sprite, under).astype(np.uint8)
    w = window_pixels(src.urls, src.log.lines, src.slide)
    out[src.window.y : src.window.y + WIN_H, src.window.x : src.window.x + WIN_W] = w
    return out


def assert_composed(src: DemoSource, render: RenderService) -> None:
    assert np.array_equal(src.window.pixels, window_pixels(src.urls, src.log.lines, src.slide))  # the model, too
    got, want = render.primary.pixels, expected_screen(src)
    n = int(np.any(got != want, axis=2).sum())
    assert n == 0, f"{n} pixels differ from the from-scratch composition"


def assert_copies_read_only_clean_pixels(calls: list[tuple]) -> None:
    """Within a frame, no copy reads an area damaged since the last frame: what it copies is
    what every client already holds, so a COPY_BITS needs no fix-up."""
    damaged: list[Rect] = []
    for c in calls:
        if c[0] == "damage":
            damaged.append(c[1])
        else:
            assert all(d.intersect(c[1]).empty() for d in damaged), (c, damaged)


def title_point(src: DemoSource) -> tuple[int, int]:
    return src.window.x + 100, src.window.y + TITLE_H // 2


def abs_rect(src: DemoSource, r: Rect) -> Rect:
    return src.window.on_screen(r)


# --- the window ---------------------------------------------------------------------------
def test_drag_is_one_copy_and_the_exposed_area_per_frame():
    src, render, clock, rec = _demo()
    assert_composed(src, render)
    gx, gy = title_point(src)
    src.pointer(A, gx, gy, 0)
    src.button(A, 1, True, gx, gy, 1)
    moves = [(30, 20), (5, -3), (300, 200), (-250, -150), (0, 40)]  # small, large, back, down
    for dx, dy in moves:
        old = src.window.rect
        for i in range(1, 51):  # a flood of motion: one move at the next frame
            src.pointer(A, gx + dx * i // 50, gy + dy * i // 50, 1)
        render.flush()
        new = Rect(old.left + dx, old.top + dy, old.right + dx, old.bottom + dy)
        assert src.window.rect == new
        exposed = subtract(old, new)
        assert rec.take() == [("copy", old, new.left, new.top)] + [("damage", r) for r in exposed]
        assert sum(r.area for r in exposed) < old.area  # never the whole window when they overlap
        assert_composed(src, render)
        gx, gy = gx + dx, gy + dy
    src.button(A, 1, False, gx, gy, 0)
    assert src.window.drag is None
    assert src.strokes == 0  # pressing the title bar paints nothing


def test_first_press_on_the_title_bar_owns_the_drag():
    src, render, clock, rec = _demo()
    gx, gy = title_point(src)
    start = src.window.rect
    src.button(A, 1, True, gx, gy, 1)
    src.button(B, 1, True, gx + 50, gy, 1)  # second: ignored, and paints no stroke
    src.pointer(B, gx + 250, gy + 100, 1)
    render.flush()
    assert src.window.rect == start and rec.take() == [] and src.strokes == 0
    src.pointer(A, gx + 10, gy + 10, 1)
    src.button(B, 1, False, gx + 250, gy + 100, 0)  # B's release does not end A's drag
    src.pointer(A, gx + 20, gy + 30, 1)
    render.flush()
    assert src.window.rect[:2] == (start.left + 20, start.top + 30)
    src.button(A, 1, False, gx + 20, gy + 30, 0)
    rec.take()
    # Now B can take it; and a drag past the edges keeps the window whole and below the bar.
    bx, by = title_point(src)
    src.button(B, 1, True, bx, by, 1)
    src.pointer(B, bx + 5000, by - 5000, 1)
    render.flush()
    assert src.window.rect == Rect(WIDTH - WIN_W, BAR_H, WIDTH, BAR_H + WIN_H)
    assert_composed(src, render)
    src.client_gone(B)  # a client that leaves mid-drag lets go
    assert src.window.drag is None


def test_desktop_layers_stay_right_under_any_mix_of_moves_ticks_strokes_and_typing():
    """The ball and strokes stay on the desktop, under the window; after every frame of a
    random mix the surface equals the from-scratch composition."""
    src, render, clock, rec = _demo(paused=False)
    rnd = random.Random(12)
    dragging = False
    for _ in range(150):
        op = rnd.random()
        if op < 0.3:
            clock.advance(1.0 / src.fps)  # ball, clock, log and slides move on
        elif op < 0.55:
            if not dragging:
                gx, gy = title_point(src)
                src.pointer(A, gx, gy, 0)
                src.button(A, 1, True, gx, gy, 1)
                dragging = True
            for _ in range(rnd.randrange(1, 6)):
                src.pointer(A, rnd.randrange(WIDTH), rnd.randrange(HEIGHT), 1)
            if rnd.random() < 0.3:
                src.button(A, 1, False, 0, 0, 0)
                dragging = False
        elif op < 0.8:  # B scribbles anywhere, also under the window
            x, y = rnd.randrange(WIDTH), rnd.randrange(BAR_H, HEIGHT)
            src.button(B, 1, True, x, y, 1)
            for _ in range(rnd.randrange(1, 8)):
                x, y = min(max(x + rnd.randrange(-80, 81), 0), WIDTH - 1), min(max(y + rnd.randrange(-80, 81), 0), HEIGHT - 1)
                src.pointer(B, x, y, 1)
            src.button(B, 1, False, x, y, 0)
        elif op < 0.9:
            src.key(C, rnd.choice([H_KEY, I_KEY, ENTER]), True)
        else:
            r = rnd.choice(ICONS)
            src.pointer(C, r.left + 5, r.top + 5, 0) if rnd.random() < 0.7 else src.pointer(C, 5, 700, 0)
        render.flush()
        assert_composed(src, render)
        assert_copies_read_only_clean_pixels(rec.take())
    assert src.window.moves > 5 and src.log.added > 3 and src.strokes > 20
    # The widgets are above the strokes: the strokes never reach the text line or the icons.
    backdrop = draw_backdrop()
    for r in ICONS:
        lit = ICONS.index(r) in src._lit
        assert np.array_equal(src.desktop[r.top : r.bottom, r.left : r.right], icon(lit))
    assert np.array_equal(src.desktop[:BAR_H, : CLOCK_BOX.left], backdrop[:BAR_H, : CLOCK_BOX.left])
    assert np.array_equal(src.desktop[TEXT_BOX.top : TEXT_BOX.bottom, TEXT_BOX.left : TEXT_BOX.right], src._text_pixels())


def test_a_stroke_under_the_window_shows_when_it_moves_away():
    src, render, clock, rec = _demo()
    x0, y0 = WELCOME.left + 200, WELCOME.top + 100
    src.button(B, 1, True, x0, y0, 1)
    for x in range(x0, x0 + 101, 10):
        src.pointer(B, x, y0, 1)
    src.button(B, 1, False, x0 + 100, y0, 0)
    render.flush()
    assert rec.take() == []  # hidden: nothing on screen changed
    assert not np.any(np.all(render.primary.pixels[y0, x0 : x0 + 100, :3] == (0, 200, 0), axis=1))
    gx, gy = title_point(src)
    src.button(A, 1, True, gx, gy, 1)
    src.pointer(A, gx, gy + 300, 1)
    render.flush()
    assert np.all(render.primary.pixels[y0, x0 : x0 + 100, :3] == (0, 200, 0))  # B G R
    assert_composed(src, render)


# --- the log --------------------------------------------------------------------------------
def _type_line(src: DemoSource, keys: list[int]) -> None:
    for k in keys:
        src.key(C, k, True)
    src.key(C, ENTER, True)


def test_log_scrolls_by_copy_and_paints_only_the_new_lines():
    src, render, clock, rec = _demo()
    log = abs_rect(src, LOG)
    _type_line(src, [H_KEY, I_KEY])
    render.flush()
    assert src.log.lines[-1].endswith("client 0x3: hi")  # in hex, as the server log names clients
    assert rec.take() == [
        ("copy", Rect(log.left, log.top + LINE_H, log.right, log.bottom), log.left, log.top),
        ("damage", Rect(log.left, log.bottom - LINE_H, log.right, log.bottom)),
        ("damage", TEXT_BOX),
    ]
    assert_composed(src, render)

    for _ in range(3):  # three lines in one frame: one copy by three lines, one strip of three
        src._log("three at once")
    render.flush()
    assert rec.take() == [
        ("copy", Rect(log.left, log.top + 3 * LINE_H, log.right, log.bottom), log.left, log.top),
        ("damage", Rect(log.left, log.bottom - 3 * LINE_H, log.right, log.bottom)),
    ]
    assert_composed(src, render)

    for i in range(LINES + 2):  # more than the panel holds: no copy, the panel once
        src._log(f"flood {i}")
    render.flush()
    assert rec.take() == [("damage", log)]
    assert_composed(src, render)


def test_log_line_a_second_from_the_clock_and_scrolling_while_the_window_moves():
    src, render, clock, rec = _demo(paused=False)
    before = src.log.added
    for _ in range(src.log_every):
        clock.advance(1.0 / src.fps)
    assert src.log.added == before + 1 and "tick 20" in src.log.lines[-1]
    assert_composed(src, render)
    src.paused = True
    rec.take()
    # A move and a new line in one frame: the window moves first, the log scrolls at its new place.
    gx, gy = title_point(src)
    old = src.window.rect
    src.button(A, 1, True, gx, gy, 1)
    src.pointer(A, gx + 40, gy + 60, 1)
    _type_line(src, [I_KEY])
    render.flush()
    new = src.window.rect
    log = abs_rect(src, LOG)
    assert rec.take() == [
        ("copy", old, new.left, new.top),
        *[("damage", r) for r in subtract(old, new)],
        ("copy", Rect(log.left, log.top + LINE_H, log.right, log.bottom), log.left, log.top),
        ("damage", Rect(log.left, log.bottom - LINE_H, log.right, log.bottom)),
        ("damage", TEXT_BOX),
    ]
    assert_composed(src, render)


# --- repeated content ------------------------------------------------------------------------
def test_slides_repeat_byte_identical_in_exactly_their_rect():
    src, render, clock, rec = _demo(paused=False)
    seen: dict[int, list[bytes]] = {}
    rect = abs_rect(src, SLIDE)
    for _ in range(3 * SLIDES * src.slide_every):
        clock.advance(1.0 / src.fps)
        calls = rec.take()
        if ("damage", rect) in calls:
            seen.setdefault(src.slide, []).append(render.primary.crop(rect).tobytes())
        else:
            assert not any(c[0] == "damage" and not c[1].intersect(rect).empty() for c in calls)
    assert sorted(seen) == list(range(SLIDES))
    for k, crops in seen.items():
        assert len(crops) >= 2 and len(set(crops)) == 1  # each showing byte for byte the same
        assert crops[0] == np.ascontiguousarray(slide(k)).tobytes()
    assert len({crops[0] for crops in seen.values()}) == SLIDES
    assert_composed(src, render)


def test_hovered_icons_are_drawn_in_their_own_rects_and_repeat():
    src, render, clock, rec = _demo()
    lit, unlit = set(), set()
    for i, r in enumerate(ICONS):
        src.pointer(A, r.left + 10, r.top + 10, 0)
        render.flush()
        calls = rec.take()
        assert calls == ([("damage", ICONS[i - 1])] if i else []) + [("damage", r)]
        lit.add(render.primary.crop(r).tobytes())
        if i:
            unlit.add(render.primary.crop(ICONS[i - 1]).tobytes())
    assert lit == {np.ascontiguousarray(icon(True)).tobytes()}
    assert unlit == {np.ascontiguousarray(icon(False)).tobytes()}
    src.pointer(B, ICONS[0].left + 1, ICONS[0].top + 1, 0)  # two pointers: two icons lit
    render.flush()
    assert rec.take() == [("damage", ICONS[0])]
    src.client_gone(A)
    render.flush()
    assert rec.take() == [("damage", ICONS[-1])]
    assert_composed(src, render)


# --- real clients -----------------------------------------------------------------------------
def test_two_clients_one_drags_the_window_both_exact(spawn):
    steps = 12
    server = spawn.harness(paused=True)  # the ball and the log stand still: input only
    a = spawn.client("--port", str(server.port))
    b = spawn.client("--port", str(server.port))
    for c in (a, b):
        c.wait_event("mark")
        c.wait_event("channel", channel="inputs", what="opened")
    gx, gy = WELCOME.left + 120, WELCOME.top + 12
    dx, dy = 260, 190
    a.send(f"position {gx} {gy} 0")
    a.send("press 1 1")
    for i in range(1, steps + 1):
        a.send(f"position {gx + dx * i // steps} {gy + dy * i // steps} 1")
    a.send("release 1 0")
    state = wait_until(
        lambda: (s := server.stats()["source_state"])["dragging"] is None and s["window"] == [WELCOME.left + dx, WELCOME.top + dy] and s,
        what="the window at its new place",
    )
    assert state["strokes"] == 0 and state["window_moves"] >= 1
    # Then a typed line scrolls the log in the window's new place.
    for key in (H_KEY, I_KEY, ENTER):
        b.send(f"key {key}")
    wait_until(lambda: server.stats()["source_state"]["log_lines"] >= 3, what="the typed line in the log")
    time.sleep(0.2)
    fb = assert_clients_match(server, [a, b])
    x, y = WELCOME.left + dx, WELCOME.top + dy
    title = as_rgb(frame_pixels([])[:TITLE_H])
    assert np.array_equal(fb[y : y + TITLE_H, x : x + WIN_W], title)  # the window is where it was put
    assert not np.array_equal(fb[WELCOME.top : WELCOME.top + TITLE_H, WELCOME.left : WELCOME.right], title)
