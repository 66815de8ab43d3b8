"""`demo`: a built-in 1024x768 desktop that keeps changing and answers input.

A static backdrop (gradient, title bar, a window with text, a text line) is drawn
once with Pillow; a clock in the title bar is redrawn each second and a ball
bounces at `fps`. A drag paints a stroke in the colour of the client that drags;
keys type into the text line. Only the areas that changed are marked damaged.

Input changes state and marks damage; the pixels are painted once a frame (the render
service's paint hook), so a flood of key presses or pointer motion costs one text
redraw and one vectorised stroke paint per frame, not one per event.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from twisted.internet import task

from ..render.cursor import CursorShape, arrow_cursor
from ..render.rect import Rect
from .base import DisplaySource, rgb_to_xrgb

if TYPE_CHECKING:
    from ..inputs import InputOrigin
    from ..render.cursor import CursorService
    from ..render.service import RenderService

WIDTH, HEIGHT = 1024, 768
BAR_H = 36
CLOCK_BOX = Rect(WIDTH - 200, 0, WIDTH, BAR_H)
TEXT_BOX = Rect(60, 690, 964, 736)
BALL = 48
BRUSH = 3  # stroke half-width in pixels
MAX_TEXT = 70
WELCOME = Rect(60, 90, 560, 380)  # the window with the text and the connect lines
MAX_URLS = 4

# US layout, set-1 scancodes -> (plain, shifted)
_ROWS = [
    (0x02, "1234567890-=", "!@#$%^&*()_+"),
    (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
    (0x1E, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
]
KEYMAP: dict[int, tuple[str, str]] = {
    code + i: (a, b) for code, plain, shifted in _ROWS for i, (a, b) in enumerate(zip(plain, shifted, strict=True))
}
KEYMAP[0x39] = (" ", " ")
SHIFT_KEYS = {0x2A, 0x36}
BACKSPACE, ENTER = 0x0E, 0x1C


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _ibeam_cursor() -> CursorShape:
    img = Image.new("RGBA", (9, 20), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rectangle([3, 0, 5, 19], fill=(255, 255, 255, 255))
    d.line([(4, 1), (4, 18)], fill=(0, 0, 0, 255))
    d.line([(1, 1), (7, 1)], fill=(0, 0, 0, 255))
    d.line([(1, 18), (7, 18)], fill=(0, 0, 0, 255))
    return CursorShape.from_rgba(np.asarray(img), 4, 10)


class DemoSource(DisplaySource):
    name = "demo"
    accepts_absolute = True

    def __init__(self, fps: float = 20.0, clock: object | None = None, urls: Sequence[str] = ()) -> None:
        self.width, self.height = WIDTH, HEIGHT
        self.fps = fps
        self._clock = clock
        self._loop: task.LoopingCall | None = None
        self.render: RenderService | None = None
        self.cursor: CursorService | None = None
        self.typed = ""
        self.show_urls(urls)
        self.ball = self._draw_ball()
        self.arrow, self.ibeam = arrow_cursor(), _ibeam_cursor()
        self.pos = [200.0, 300.0]
        self.vel = [7.0, 5.0]
        self._shown_time = ""
        self.frames = 0
        self.strokes = 0
        self.caps = False
        self._drawing: dict[int, tuple[int, int]] = {}
        self._shift: dict[int, bool] = {}
        self._segments: dict[tuple[int, int, int], list[tuple[int, int, int, int]]] = {}  # colour -> unpainted
        self._text_dirty = False

    def show_urls(self, urls: Sequence[str]) -> None:
        """Say on the desktop where it is served (the server's real spice:// URLs); before start."""
        self.urls = list(urls)
        self.backdrop = rgb_to_xrgb(self._draw_backdrop())
        self.canvas = self.backdrop.copy()  # backdrop + strokes + typed text; the ball goes on top
        t = TEXT_BOX
        self.canvas[t.top : t.bottom, t.left : t.right] = self._text_pixels()

    # --- drawing ------------------------------------------------------------------------
    def _connect_lines(self) -> list[str]:
        if not self.urls:
            return []
        lines = ["Connect more viewers (remote-viewer, from virt-viewer):"]
        for url in self.urls[:MAX_URLS]:
            lines.append("  remote-viewer " + shlex.quote(url) + ("  (TLS)" if "tls-port=" in url else ""))
        if len(self.urls) > MAX_URLS:
            lines.append(f"  ... and {len(self.urls) - MAX_URLS} more: see the server log")
        return lines

    def _draw_backdrop(self) -> np.ndarray:
        y = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[None, :]
        rgb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        rgb[..., 0] = (30 + 40 * y + 20 * x).astype(np.uint8)
        rgb[..., 1] = (60 + 80 * y).astype(np.uint8)
        rgb[..., 2] = (110 + 100 * (1 - y) + 20 * x).astype(np.uint8)
        img = Image.fromarray(rgb, "RGB")
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, WIDTH, BAR_H], fill=(24, 26, 32))
        d.text((12, 7), "spice-twisted demo desktop", fill=(230, 230, 235), font=_font(20))
        w = WELCOME
        d.rectangle([w.left, w.top, w.right, w.bottom], fill=(245, 245, 240), outline=(40, 40, 60), width=2)
        d.rectangle([w.left, w.top, w.right, w.top + 28], fill=(70, 90, 150))
        d.text((w.left + 12, w.top + 4), "Welcome", fill=(255, 255, 255), font=_font(18))
        lines = [
            "You are looking at a SPICE display served by Twisted.",
            "Every connected client sees this same desktop.",
            "Drag to paint in your own colour; type into the line below.",
            "",
            *self._connect_lines(),
        ]
        # The longest line sets the size, so a long URL still fits the window.
        size = 17
        while size > 10 and max(d.textlength(line, font=_font(size)) for line in lines) > w.width - 32:
            size -= 1
        step = min(26, (w.height - 54) // len(lines))
        for i, line in enumerate(lines):
            d.text((w.left + 16, w.top + 44 + step * i), line, fill=(20, 20, 30), font=_font(size))
        for i, colour in enumerate([(220, 60, 60), (60, 180, 80), (60, 110, 220), (230, 200, 40)]):
            d.rectangle([620 + 90 * i, 120, 690 + 90 * i, 190], fill=colour)
        t = TEXT_BOX
        d.rectangle([t.left, t.top, t.right - 1, t.bottom - 1], fill=(250, 250, 250), outline=(30, 30, 40), width=2)
        return np.asarray(img)

    def _draw_ball(self) -> np.ndarray:
        img = Image.new("RGB", (BALL, BALL), (0, 0, 0))
        ImageDraw.Draw(img).ellipse([0, 0, BALL - 1, BALL - 1], fill=(250, 120, 30), outline=(255, 255, 255))
        sprite = rgb_to_xrgb(np.asarray(img))
        mask = np.asarray(img.convert("L")) > 0
        return np.where(mask[..., None], sprite.astype(np.int16), np.int16(-1))  # -1 = transparent

    def _clock_pixels(self, text: str) -> np.ndarray:
        img = Image.new("RGB", (CLOCK_BOX.width, CLOCK_BOX.height), (24, 26, 32))
        ImageDraw.Draw(img).text((20, 7), text, fill=(150, 220, 150), font=_font(20))
        return rgb_to_xrgb(np.asarray(img))

    def _text_pixels(self) -> np.ndarray:
        t = TEXT_BOX
        img = Image.new("RGB", (t.width, t.height), (250, 250, 250))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, t.width - 1, t.height - 1], outline=(30, 30, 40), width=2)
        d.text((12, 12), "> " + self.typed + "_", fill=(10, 10, 20), font=_font(20))
        return rgb_to_xrgb(np.asarray(img))

    # --- running ------------------------------------------------------------------------
    def start(self, render: RenderService, cursor: CursorService) -> None:
        self.render, self.cursor = render, cursor
        render.primary.pixels[:] = self.canvas
        self._paint_clock(force=True)
        self._paint_ball()
        render.damage(render.primary.rect)
        render.add_paint_hook(self.paint)
        cursor.set_shape(self.arrow)
        self._loop = task.LoopingCall(self.tick)
        if self._clock is not None:
            self._loop.clock = self._clock
        self._loop.start(1.0 / self.fps, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _ball_rect(self) -> Rect:
        x, y = int(self.pos[0]), int(self.pos[1])
        return Rect(x, y, x + BALL, y + BALL)

    def _paint_ball(self) -> Rect:
        assert self.render is not None
        r = self._ball_rect()
        px = self.render.primary.pixels[r.top : r.bottom, r.left : r.right]
        px[:] = np.where(self.ball >= 0, self.ball, self.canvas[r.top : r.bottom, r.left : r.right]).astype(np.uint8)
        return r

    def _paint_clock(self, force: bool = False) -> Rect | None:
        assert self.render is not None
        text = time.strftime("%H:%M:%S")
        if text == self._shown_time and not force:
            return None
        self._shown_time = text
        r = CLOCK_BOX
        self.render.primary.pixels[r.top : r.bottom, r.left : r.right] = self._clock_pixels(text)
        return r

    def _show(self, r: Rect) -> None:
        """Copy a changed canvas area to the surface (ball on top) and mark it damaged."""
        assert self.render is not None
        r = r.intersect(self.render.primary.rect)
        if r.empty():
            return
        self.render.primary.pixels[r.top : r.bottom, r.left : r.right] = self.canvas[r.top : r.bottom, r.left : r.right]
        ball = self._ball_rect()
        if not r.intersect(ball).empty():
            self._paint_ball()
            r = r.union(ball)
        self.render.damage(r)

    def tick(self) -> None:
        """Move the ball one step and mark only what changed."""
        assert self.render is not None
        if self.paused:
            return
        self.frames += 1
        old = self._ball_rect()
        pixels = self.render.primary.pixels
        pixels[old.top : old.bottom, old.left : old.right] = self.canvas[old.top : old.bottom, old.left : old.right]
        for i, limit in ((0, WIDTH - BALL), (1, HEIGHT - BALL)):
            self.pos[i] += self.vel[i]
            lo = BAR_H if i == 1 else 0
            if not lo <= self.pos[i] <= limit:
                self.vel[i] = -self.vel[i]
                self.pos[i] = min(max(self.pos[i], lo), limit)
        self.render.damage(old.union(self._paint_ball()))
        clock = self._paint_clock()
        if clock is not None:
            self.render.damage(clock)

    # --- input ----------------------------------------------------------------------------
    def _stroke(self, colour: tuple[int, int, int], a: tuple[int, int], b: tuple[int, int]) -> None:
        """Remember a segment a->b of a stroke; it is painted at the next frame."""
        self._segments.setdefault(colour, []).append((a[0], a[1], b[0], b[1]))
        self.strokes += 1
        assert self.render is not None
        box = Rect(min(a[0], b[0]) - BRUSH, max(min(a[1], b[1]) - BRUSH, BAR_H), max(a[0], b[0]) + BRUSH + 1, max(a[1], b[1]) + BRUSH + 1)
        self.render.damage(box)

    def paint(self) -> None:
        """Once a frame: paint what input changed since the last one into the canvas and surface."""
        if self._text_dirty:
            self._text_dirty = False
            t = TEXT_BOX
            self.canvas[t.top : t.bottom, t.left : t.right] = self._text_pixels()
            self._show(t)
        segments, self._segments = self._segments, {}
        assert self.render is not None
        for colour, segs in segments.items():
            # Into the canvas and the surface at once; each segment's box was marked damaged
            # when it arrived. The ball stays on top.
            box = _paint_segments((self.canvas, self.render.primary.pixels), np.array(segs, dtype=np.int64), colour)
            if not box.intersect(self._ball_rect()).empty():
                self.render.damage(self._paint_ball())

    def pointer(self, origin: InputOrigin, x: int, y: int, buttons: int) -> None:
        if self.cursor is not None:
            self.cursor.set_shape(self.ibeam if TEXT_BOX.contains(Rect(x, y, x + 1, y + 1)) else self.arrow)
        last = self._drawing.get(origin.session_id)
        if buttons & 1 or last is not None:
            # A client that coalesced motion may send its last position with the release
            # state already applied: the segment to it still belongs to the stroke.
            self._stroke(origin.colour, last or (x, y), (x, y))
        if buttons & 1:
            self._drawing[origin.session_id] = (x, y)
        else:
            self._drawing.pop(origin.session_id, None)

    def button(self, origin: InputOrigin, button: int, pressed: bool, x: int, y: int, buttons: int) -> None:
        if button != 1:
            return
        if pressed:
            self._drawing[origin.session_id] = (x, y)
            self._stroke(origin.colour, (x, y), (x, y))
        else:
            self._drawing.pop(origin.session_id, None)

    def key(self, origin: InputOrigin, key: int, pressed: bool) -> None:
        if key in SHIFT_KEYS:
            self._shift[origin.session_id] = pressed
            return
        if not pressed:
            return
        if self.cursor is not None:
            self.cursor.hide()  # like a desktop: the pointer hides while you type
        if key == BACKSPACE:
            self.typed = self.typed[:-1]
        elif key == ENTER:
            self.typed = ""
        elif key in KEYMAP:
            plain, shifted = KEYMAP[key]
            upper = self._shift.get(origin.session_id, False) != (self.caps and plain.isalpha())
            self.typed = (self.typed + (shifted if upper else plain))[-MAX_TEXT:]
        else:
            return
        if not self._text_dirty:
            self._text_dirty = True
            assert self.render is not None
            self.render.damage(TEXT_BOX)

    def locks(self, modifiers: int) -> None:
        self.caps = bool(modifiers & 4)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "typed": self.typed, "strokes": self.strokes, "frames": self.frames}


def _paint_segments(targets: tuple[np.ndarray, ...], segs: np.ndarray, colour: tuple[int, int, int]) -> Rect:
    """Paint line segments (rows x0, y0, x1, y1) with the square brush into every target, all
    segments at once (a few numpy operations, however many segments); returns their bounding box."""
    h, w = targets[0].shape[:2]
    a, b = segs[:, :2], segs[:, 2:]
    n = np.abs(b - a).max(axis=1) + 1  # points per segment: one per pixel step
    seg = np.repeat(np.arange(len(segs)), n)
    step = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = step / np.maximum(np.repeat(n - 1, n), 1)
    pts = np.rint(a[seg] + (b[seg] - a[seg]) * t[:, None]).astype(np.int64)
    bgrx = np.array([colour[2], colour[1], colour[0], 0], dtype=np.uint8)
    # Mark the points in a mask over their bounding box, widen it by the brush (shifted
    # ORs), paint where it is set: the cost is the points plus the box, not points x brush.
    x0, y0 = int(pts[:, 0].min()), int(pts[:, 1].min())
    mask = np.zeros((int(pts[:, 1].max()) - y0 + 1 + 2 * BRUSH, int(pts[:, 0].max()) - x0 + 1 + 2 * BRUSH), dtype=bool)
    mask[pts[:, 1] - y0 + BRUSH, pts[:, 0] - x0 + BRUSH] = True
    wide = mask.copy()
    for d in range(1, BRUSH + 1):
        wide[d:] |= mask[:-d]
        wide[:-d] |= mask[d:]
    mask = wide.copy()
    for d in range(1, BRUSH + 1):
        mask[:, d:] |= wide[:, :-d]
        mask[:, :-d] |= wide[:, d:]
    top, left = y0 - BRUSH, x0 - BRUSH  # the mask's origin on the screen
    t0, l0 = max(top, BAR_H), max(left, 0)
    t1, l1 = min(top + mask.shape[0], h), min(left + mask.shape[1], w)
    if t0 < t1 and l0 < l1:
        m = mask[t0 - top : t1 - top, l0 - left : l1 - left]
        for target in targets:
            target[t0:t1, l0:l1][m] = bgrx
    return Rect(
        int(pts[:, 0].min()) - BRUSH, int(pts[:, 1].min()) - BRUSH, int(pts[:, 0].max()) + BRUSH + 1, int(pts[:, 1].max()) + BRUSH + 1
    )
