"""`demo`: a built-in desktop (1024x768 until a client asks for another size) that keeps
changing and answers input.

Layers, bottom to top (the surface is always their composition, `compose()`):
1. the desktop (`desktop`): a backdrop drawn once with Pillow, the strokes clients paint
   by dragging (in their own colour), and the widgets above the strokes: the title bar
   with a clock, a row of identical dock icons (highlighted under a pointer), the text line;
2. the ball, bouncing at `fps`;
3. the window (sources/demo_window.py): opaque, always wholly on screen and never over
   the title bar. It holds the welcome text, a log that scrolls a line a second (and shows
   what is typed when Enter ends it), and a slideshow of four fixed pictures. Drag it by
   its title bar: the first client to press there owns the drag until it releases.

The window covers the ball and the strokes; a stroke drawn under it shows once it moves.
Moving the window is a `copy_bits` of its rect plus a repaint of only what the move
exposed; scrolling the log is a `copy_bits` of the panel plus the new line. Repeated
pictures (slides, icons) are always drawn into exactly their own rects, so a repeat is
pixel-identical to its last showing. Only what changed is marked damaged.

The demo is its own desktop for the server's built-in agent (sources/desktop_agent.py):
text a client copies is its clipboard (Ctrl+V types it into the text line), Ctrl+C offers
the log's lines as the clipboard to every client, and it takes the size the primary
client's window asks for (a new layout: the clock and dock at the right, the text line at
the bottom, at least MIN_WIDTH x MIN_HEIGHT).

Input changes state; the pixels are painted once a frame (the render service's paint
hook), so a flood of key presses or pointer motion costs one text redraw, one window move
and one vectorised stroke paint per frame, not one per event. Within a frame the window
moves first, before anything in it changes, so every copy reads only pixels the clients
already hold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw
from twisted.internet import task

from ..render.cursor import CursorShape, arrow_cursor
from ..render.rect import Rect
from .audio import DemoSounds
from .base import DisplaySource, rgb_to_xrgb
from .demo_log import LINE_H, LINES, LogModel, line_pixels, panel_pixels
from .demo_pictures import ICON, SLIDES, font, icon, slide
from .demo_video import VIDEO, VIDEO_KEY, Plasma
from .demo_window import LOG, SLIDE, WIN_H, WIN_W, DemoWindow, subtract
from .desktop_agent import TEXT, AgentSink, Contents, DesktopAgent

if TYPE_CHECKING:
    from ..inputs import InputOrigin
    from ..render.cursor import CursorService
    from ..render.service import RenderService

WIDTH, HEIGHT = 1024, 768
MIN_WIDTH, MIN_HEIGHT = 640, 480  # the smallest desktop a client may ask for: the window fits
BAR_H = 36
BALL = 48
BRUSH = 3  # stroke half-width in pixels
MAX_TEXT = 70
WELCOME = Rect(40, 40, 40 + WIN_W, 40 + WIN_H)  # where the window starts: clear of y >= 450, where tests draw
BALL_START = (700.0, 300.0)


@dataclass(frozen=True)
class Layout:
    """Where the widgets are on a desktop of one size: the clock and the dock at the right,
    the text line at the bottom (a resize lays them out again)."""

    width: int
    height: int

    @property
    def rect(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    @property
    def clock_box(self) -> Rect:
        return Rect(self.width - 200, 0, self.width, BAR_H)

    @property
    def text_box(self) -> Rect:
        return Rect(60, self.height - 78, self.width - 60, self.height - 32)

    @property
    def icons(self) -> list[Rect]:
        x0 = self.width - 364
        return [Rect(x0 + 70 * i, 80, x0 + 70 * i + ICON, 80 + ICON) for i in range(5)]  # the dock row

    @property
    def widgets(self) -> list[Rect]:
        return [self.text_box, *self.icons]  # above the strokes


DEFAULT_LAYOUT = Layout(WIDTH, HEIGHT)
CLOCK_BOX = DEFAULT_LAYOUT.clock_box
TEXT_BOX = DEFAULT_LAYOUT.text_box
ICONS = DEFAULT_LAYOUT.icons
WIDGETS = DEFAULT_LAYOUT.widgets

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
CTRL_KEYS = {0x1D, 0x11D}
KEY_C, KEY_V = 0x2E, 0x2F  # Ctrl+C copies the log to the clipboard, Ctrl+V pastes into the text line
TONE_KEY = 0x42  # F8 toggles the demo's steady tone; a click chimes (sources/audio.py)
BACKSPACE, ENTER = 0x0E, 0x1C


def _point(x: int, y: int) -> Rect:
    return Rect(x, y, x + 1, y + 1)


def _ibeam_cursor() -> CursorShape:
    img = Image.new("RGBA", (9, 20), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rectangle([3, 0, 5, 19], fill=(255, 255, 255, 255))
    d.line([(4, 1), (4, 18)], fill=(0, 0, 0, 255))
    d.line([(1, 1), (7, 1)], fill=(0, 0, 0, 255))
    d.line([(1, 18), (7, 18)], fill=(0, 0, 0, 255))
    return CursorShape.from_rgba(np.asarray(img), 4, 10)


def draw_backdrop(layout: Layout = DEFAULT_LAYOUT) -> np.ndarray:
    """The desktop before anything happens on it (B, G, R, X): gradient, title bar, icons, text line frame."""
    y = np.linspace(0.0, 1.0, layout.height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, layout.width, dtype=np.float32)[None, :]
    rgb = np.empty((layout.height, layout.width, 3), dtype=np.uint8)
    rgb[..., 0] = (30 + 40 * y + 20 * x).astype(np.uint8)
    rgb[..., 1] = (60 + 80 * y).astype(np.uint8)
    rgb[..., 2] = (110 + 100 * (1 - y) + 20 * x).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, layout.width, BAR_H], fill=(24, 26, 32))
    d.text((12, 7), "spice-twisted demo desktop", fill=(230, 230, 235), font=font(20))
    t = layout.text_box
    d.rectangle([t.left, t.top, t.right - 1, t.bottom - 1], fill=(250, 250, 250), outline=(30, 30, 40), width=2)
    out = rgb_to_xrgb(np.asarray(img))
    for r in layout.icons:
        out[r.top : r.bottom, r.left : r.right] = icon(False)
    return out


class DemoSource(DisplaySource, DesktopAgent):
    name = "demo"
    accepts_absolute = True
    # The built-in agent (sources/desktop_agent.py): text both ways, and any size asked for.
    clipboard_types = frozenset({TEXT})
    can_resize = True

    def __init__(
        self, fps: float = 20.0, clock: object | None = None, urls: Sequence[str] = (), ca_file: str | None = None, video: bool = False
    ) -> None:
        self.width, self.height = WIDTH, HEIGHT
        self.layout = DEFAULT_LAYOUT
        self.agent_sink: AgentSink | None = None
        self.clipboard: dict[str, str] = {}  # selection -> text a client copied
        self.pastes = 0
        self.fps = fps
        self.log_every = max(1, round(fps))  # ticks between log lines: about a second
        self.slide_every = max(1, round(fps / 2))  # ticks between slides: about half a second
        self._clock = clock
        self._loop: task.LoopingCall | None = None
        self.render: RenderService | None = None
        self.cursor: CursorService | None = None
        self.typed = ""
        self.log = LogModel()
        self.slide = 0
        self._slide_due = False
        self.show_urls(urls, ca_file)
        self.ball = self._draw_ball()
        self.arrow, self.ibeam = arrow_cursor(), _ibeam_cursor()
        self.pos = list(BALL_START)
        self.vel = [7.0, 5.0]
        self._shown_time = ""
        self.frames = 0
        self.strokes = 0
        self.caps = False
        self._drawing: dict[int, tuple[int, int]] = {}
        self._shift: dict[int, bool] = {}
        self._ctrl: dict[int, bool] = {}
        self._held_on_title: set[int] = set()  # pressed on the bar while another client drags
        self._hover: dict[int, int] = {}  # session -> the icon under its pointer
        self._lit: set[int] = set()  # icons painted highlighted
        self._segments: dict[tuple[int, int, int], list[tuple[int, int, int, int]]] = {}  # colour -> unpainted
        self._text_dirty = False
        self.sounds = DemoSounds()  # the server plays them (unless --audio-source)
        self._plasma: Plasma | None = None
        self.video = False  # the video window (sources/demo_video.py): F9 toggles it
        self.video_frames = 0
        self._video_wanted = video

    def show_urls(self, urls: Sequence[str], ca_file: str | None = None) -> None:
        """Say on the desktop where it is served (the server's real spice:// URLs, and the CA
        a TLS viewer checks the server with); before start."""
        self.urls, self.ca_file = list(urls), ca_file
        self.backdrop = draw_backdrop(self.layout)
        self.desktop = self.backdrop.copy()  # layer 1: backdrop + strokes + widgets
        t = self.layout.text_box
        self.desktop[t.top : t.bottom, t.left : t.right] = self._text_pixels()
        self.window = DemoWindow(self.urls, WELCOME.left, WELCOME.top, Rect(0, BAR_H, self.width, self.height), ca_file)

    @property
    def canvas(self) -> np.ndarray:
        """The screen without the ball: the desktop with the window on it."""
        w = self.window.rect
        out = self.desktop.copy()
        out[w.top : w.bottom, w.left : w.right] = self.window.pixels
        return out

    # --- drawing ------------------------------------------------------------------------
    def _draw_ball(self) -> np.ndarray:
        img = Image.new("RGB", (BALL, BALL), (0, 0, 0))
        ImageDraw.Draw(img).ellipse([0, 0, BALL - 1, BALL - 1], fill=(250, 120, 30), outline=(255, 255, 255))
        sprite = rgb_to_xrgb(np.asarray(img))
        mask = np.asarray(img.convert("L")) > 0
        return np.where(mask[..., None], sprite.astype(np.int16), np.int16(-1))  # -1 = transparent

    def _clock_pixels(self, text: str) -> np.ndarray:
        img = Image.new("RGB", (self.layout.clock_box.width, self.layout.clock_box.height), (24, 26, 32))
        ImageDraw.Draw(img).text((20, 7), text, fill=(150, 220, 150), font=font(20))
        return rgb_to_xrgb(np.asarray(img))

    def _text_pixels(self) -> np.ndarray:
        t = self.layout.text_box
        img = Image.new("RGB", (t.width, t.height), (250, 250, 250))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, t.width - 1, t.height - 1], outline=(30, 30, 40), width=2)
        d.text((12, 12), "> " + self.typed + "_", fill=(10, 10, 20), font=font(20))
        return rgb_to_xrgb(np.asarray(img))

    def compose(self, r: Rect) -> np.ndarray:
        """The layers over `r`: desktop, the ball on it, the window on top."""
        out = self.desktop[r.top : r.bottom, r.left : r.right].copy()
        ball = self._ball_rect()
        b = ball.intersect(r)
        if not b.empty():
            sprite = self.ball[b.top - ball.top : b.bottom - ball.top, b.left - ball.left : b.right - ball.left]
            under = out[b.top - r.top : b.bottom - r.top, b.left - r.left : b.right - r.left]
            under[:] = np.where(sprite >= 0, sprite, under).astype(np.uint8)
        win = self.window.rect
        w = win.intersect(r)
        if not w.empty():
            out[w.top - r.top : w.bottom - r.top, w.left - r.left : w.right - r.left] = self.window.pixels[
                w.top - win.top : w.bottom - win.top, w.left - win.left : w.right - win.left
            ]
        return out

    # --- running ------------------------------------------------------------------------
    def start(self, render: RenderService, cursor: CursorService) -> None:
        self.render, self.cursor = render, cursor
        self.bind_bound(render)
        self.log.add(time.strftime("%H:%M:%S") + "  log: a line a second, and each typed line")
        self.log.take()
        self.window.pixels[LOG.top : LOG.bottom, LOG.left : LOG.right] = panel_pixels(self.log.lines, LOG.width)
        self._paint_clock(force=True)
        render.primary.pixels[:] = self.compose(render.primary.rect)
        render.damage(render.primary.rect)
        render.add_paint_hook(self.paint)
        cursor.set_shape(self.arrow)
        if self._video_wanted:
            self.set_video(True)
        self._loop = task.LoopingCall(self.tick)
        if self._clock is not None:
            self._loop.clock = self._clock
        self._loop.start(1.0 / self.fps, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    # --- the video window (sources/demo_video.py) -------------------------------------
    def set_video(self, on: bool) -> bool:
        """Show or hide the video; hidden, its area is the backdrop again."""
        if on == self.video:
            return on
        self.video = on
        if on:
            if self._plasma is None:
                self._plasma = Plasma()
            self._paint_video()
        else:
            v = VIDEO
            self.desktop[v.top : v.bottom, v.left : v.right] = self.backdrop[v.top : v.bottom, v.left : v.right]
            if self.render is not None:
                self._show(v)
        return on

    def _paint_video(self) -> None:
        assert self._plasma is not None
        v = VIDEO
        self.desktop[v.top : v.bottom, v.left : v.right] = self._plasma.frame(self.video_frames)
        self.video_frames += 1
        if self.render is not None:
            self._show(v)

    def _ball_rect(self) -> Rect:
        x, y = int(self.pos[0]), int(self.pos[1])
        return Rect(x, y, x + BALL, y + BALL)

    def _paint_clock(self, force: bool = False) -> Rect | None:
        text = time.strftime("%H:%M:%S")
        if text == self._shown_time and not force:
            return None
        self._shown_time = text
        r = self.layout.clock_box
        self.desktop[r.top : r.bottom, r.left : r.right] = self._clock_pixels(text)
        return r

    def _visible(self, r: Rect) -> list[Rect]:
        """The parts of r the window does not cover: where a change below it shows."""
        return subtract(r.intersect(self.layout.rect), self.window.rect)

    def _show(self, r: Rect) -> None:
        """Recompose `r` on the surface and mark what of it is visible damaged."""
        assert self.render is not None
        r = r.intersect(self.render.primary.rect)
        if r.empty():
            return
        self.render.primary.pixels[r.top : r.bottom, r.left : r.right] = self.compose(r)
        for v in self._visible(r):
            self.render.damage(v)

    def _want_frame(self) -> None:
        """State changed that the next frame's paint hook draws: make sure a frame runs."""
        if self.render is not None:
            self.render.request_frame()

    def tick(self) -> None:
        """Move the ball one step, time the log and the slideshow, and mark only what changed."""
        assert self.render is not None
        if self.paused:
            return
        self.frames += 1
        old = self._ball_rect()
        for i, limit in ((0, self.width - BALL), (1, self.height - BALL)):
            self.pos[i] += self.vel[i]
            lo = BAR_H if i == 1 else 0
            if not lo <= self.pos[i] <= limit:
                self.vel[i] = -self.vel[i]
                self.pos[i] = min(max(self.pos[i], lo), limit)
        self._show(old.union(self._ball_rect()))
        if self.video:
            self._paint_video()
        clock = self._paint_clock()
        if clock is not None:
            self._show(clock)
        if self.frames % self.log_every == 0:
            x, y = self._ball_rect()[:2]
            self.log.add(f"{time.strftime('%H:%M:%S')}  tick {self.frames}: the ball is at ({x}, {y})")
            self._want_frame()
        if self.frames % self.slide_every == 0:
            self.slide = (self.slide + 1) % SLIDES
            self._slide_due = True
            self._want_frame()

    # --- the once-a-frame painting --------------------------------------------------------
    def paint(self) -> None:
        """Once a frame: apply what input and time changed since the last one. The window
        moves first, so its copy reads only pixels every client already has."""
        assert self.render is not None
        self._move_window()
        self._paint_log()
        if self._slide_due:
            self._slide_due = False
            self._paint_in_window(SLIDE, slide(self.slide))
        if self._text_dirty:
            self._text_dirty = False
            t = self.layout.text_box
            self.desktop[t.top : t.bottom, t.left : t.right] = self._text_pixels()
            self._show(t)
        lit = set(self._hover.values())
        for i in sorted(lit ^ self._lit):
            r = self.layout.icons[i]
            self.desktop[r.top : r.bottom, r.left : r.right] = icon(i in lit)
            self._show(r)
        self._lit = lit
        segments, self._segments = self._segments, {}
        box = Rect(0, 0, 0, 0)
        for colour, segs in segments.items():
            # Into the desktop layer; each segment's visible box was marked damaged when it
            # arrived. The surface then gets the layers over all of them.
            box = box.union(_paint_segments((self.desktop,), np.array(segs, dtype=np.int64), colour, self.layout.widgets))
        box = box.intersect(self.render.primary.rect)
        if not box.empty():
            self.render.primary.pixels[box.top : box.bottom, box.left : box.right] = self.compose(box)

    def _move_window(self) -> None:
        """A pending drag: copy the window to its new place, repaint only what that exposed."""
        assert self.render is not None
        target = self.window.take_target()
        if target is None:
            return
        old = self.window.rect
        self.render.copy_bits(old, *target)
        self.window.x, self.window.y = target
        self.window.moves += 1
        px = self.render.primary.pixels
        for r in subtract(old, self.window.rect):
            px[r.top : r.bottom, r.left : r.right] = self.compose(r)
            self.render.damage(r)

    def _paint_log(self) -> None:
        """New log lines: scroll the panel up by as many strips (a copy), then draw only them."""
        assert self.render is not None
        new = self.log.take()
        if not new:
            return
        k = min(len(new), LINES)
        panel = self.window.pixels[LOG.top : LOG.bottom, LOG.left : LOG.right]
        if k < LINES:
            self.render.copy_bits(
                self.window.on_screen(Rect(LOG.left, LOG.top + k * LINE_H, LOG.right, LOG.bottom)), *self.window.on_screen(LOG)[:2]
            )
            panel[: LOG.height - k * LINE_H] = panel[k * LINE_H :].copy()
        fresh = Rect(LOG.left, LOG.bottom - k * LINE_H, LOG.right, LOG.bottom)
        strips = [line_pixels(t, LOG.width) for t in new[-k:]]
        self._paint_in_window(fresh, np.concatenate(strips))

    def _paint_in_window(self, r: Rect, pixels: np.ndarray) -> None:
        """Window content changed over `r` (window coordinates): into the window and the surface."""
        assert self.render is not None
        self.window.pixels[r.top : r.bottom, r.left : r.right] = pixels
        s = self.window.on_screen(r)
        self.render.primary.pixels[s.top : s.bottom, s.left : s.right] = pixels
        self.render.damage(s)

    # --- input ----------------------------------------------------------------------------
    def _stroke(self, colour: tuple[int, int, int], a: tuple[int, int], b: tuple[int, int]) -> None:
        """Remember a segment a->b of a stroke; it is painted at the next frame."""
        self._segments.setdefault(colour, []).append((a[0], a[1], b[0], b[1]))
        self.strokes += 1
        assert self.render is not None
        box = Rect(min(a[0], b[0]) - BRUSH, max(min(a[1], b[1]) - BRUSH, BAR_H), max(a[0], b[0]) + BRUSH + 1, max(a[1], b[1]) + BRUSH + 1)
        visible = self._visible(box)
        for v in visible:
            self.render.damage(v)
        if not visible:
            self._want_frame()  # hidden under the window, but painted on the desktop all the same

    def _hover_at(self, session: int, x: int, y: int) -> None:
        p = _point(x, y)
        over = None if self.window.rect.contains(p) else next((i for i, r in enumerate(self.layout.icons) if r.contains(p)), None)
        if over == self._hover.get(session):
            return
        if over is None:
            self._hover.pop(session, None)
        else:
            self._hover[session] = over
        if set(self._hover.values()) != self._lit:
            self._want_frame()

    def pointer(self, origin: InputOrigin, x: int, y: int, buttons: int) -> None:
        sid = origin.session_id
        if self.window.motion(sid, x, y):
            self._want_frame()  # the window follows once a frame, however many motions
            return
        if self.cursor is not None:
            over_text = self.layout.text_box.contains(_point(x, y)) and not self.window.rect.contains(_point(x, y))
            self.cursor.set_shape(self.ibeam if over_text else self.arrow)
        self._hover_at(sid, x, y)
        if sid in self._held_on_title:
            return  # that press went to the title bar: its motion paints nothing
        last = self._drawing.get(sid)
        if buttons & 1 or last is not None:
            # A client that coalesced motion may send its last position with the release
            # state already applied: the segment to it still belongs to the stroke.
            self._stroke(origin.colour, last or (x, y), (x, y))
        if buttons & 1:
            self._drawing[sid] = (x, y)
        else:
            self._drawing.pop(sid, None)

    def button(self, origin: InputOrigin, button: int, pressed: bool, x: int, y: int, buttons: int) -> None:
        if button != 1:
            return
        sid = origin.session_id
        if pressed:
            self.sounds.click()
            if self.window.press(sid, x, y):
                return
            if self.window.title_rect.contains(_point(x, y)):
                self._held_on_title.add(sid)  # someone else's drag goes on: this press does nothing
                return
            self._drawing[sid] = (x, y)
            self._stroke(origin.colour, (x, y), (x, y))
        else:
            if self.window.release(sid):
                x, y = self.window.target or (self.window.x, self.window.y)
                self._log(f"client {sid:#x} put the window at ({x}, {y})")
            self._held_on_title.discard(sid)
            self._drawing.pop(sid, None)

    def client_gone(self, origin: InputOrigin) -> None:
        self.window.release(origin.session_id)
        self._held_on_title.discard(origin.session_id)
        self._drawing.pop(origin.session_id, None)
        if self._hover.pop(origin.session_id, None) is not None:
            self._want_frame()

    def _log(self, text: str) -> None:
        self.log.add(time.strftime("%H:%M:%S") + "  " + text)
        self._want_frame()

    def key(self, origin: InputOrigin, key: int, pressed: bool) -> None:
        if key in SHIFT_KEYS:
            self._shift[origin.session_id] = pressed
            return
        if key in CTRL_KEYS:
            self._ctrl[origin.session_id] = pressed
            return
        if not pressed:
            return
        if self._ctrl.get(origin.session_id) and key in (KEY_C, KEY_V):
            self.copy_log(origin) if key == KEY_C else self.paste(origin)
            return
        if key == VIDEO_KEY:
            self._log(f"client {origin.session_id:#x}: video {'on' if self.set_video(not self.video) else 'off'} (F9)")
            return
        if key == TONE_KEY:
            self._log(f"client {origin.session_id:#x}: tone {'on' if self.sounds.toggle_tone() else 'off'} (F8)")
            return
        if self.cursor is not None:
            self.cursor.hide()  # like a desktop: the pointer hides while you type
        if key == BACKSPACE:
            self.typed = self.typed[:-1]
        elif key == ENTER:
            if self.typed:
                self._log(f"client {origin.session_id:#x}: {self.typed}")
            self.typed = ""
        elif key in KEYMAP:
            plain, shifted = KEYMAP[key]
            upper = self._shift.get(origin.session_id, False) != (self.caps and plain.isalpha())
            self.typed = (self.typed + (shifted if upper else plain))[-MAX_TEXT:]
        else:
            return
        if not self._text_dirty:
            self._text_dirty = True
            self._want_frame()

    def locks(self, modifiers: int) -> None:
        self.caps = bool(modifiers & 4)

    # --- the built-in agent (sources/desktop_agent.py) ----------------------------------------
    def desktop_agent(self) -> DesktopAgent:
        return self

    def start_agent(self, sink: AgentSink) -> None:
        self.agent_sink = sink

    def set_clipboard(self, selection: str, contents: Contents | None) -> None:
        """A client copied: the demo's clipboard holds its text (Ctrl+V types it in)."""
        data = (contents or {}).get(TEXT)
        if data is None:
            self.clipboard.pop(selection, None)
            return
        text = data.decode("utf-8", "replace")
        self.clipboard[selection] = text
        if selection == "CLIPBOARD":
            self._log(f"clipboard: {len(text)} characters from a client (Ctrl+V pastes them)")

    def paste(self, origin: InputOrigin) -> None:
        """Ctrl+V: the clipboard's first line, printable characters only, into the text line."""
        text = self.clipboard.get("CLIPBOARD", "")
        line = "".join(ch for ch in text.split("\n", 1)[0] if ch.isprintable())
        if not line:
            return
        self.pastes += 1
        self.typed = (self.typed + line)[-MAX_TEXT:]
        if not self._text_dirty:
            self._text_dirty = True
            self._want_frame()

    def copy_log(self, origin: InputOrigin) -> None:
        """Ctrl+C: the log's lines become the desktop's clipboard, offered to every client."""
        self._log(f"client {origin.session_id:#x} copied the log")
        lines = (self.log.lines + self.log.pending)[-LINES:]
        if self.agent_sink is not None:
            self.agent_sink.desktop_clipboard("CLIPBOARD", {TEXT: "\n".join(lines).encode()})

    def resize(self, width: int, height: int) -> None:
        """The controlling client's window size: the desktop is laid out again at that size
        (at least MIN_WIDTH x MIN_HEIGHT, at most --max-surface) on a new primary surface.
        The strokes go; the window, the ball and the log stay."""
        w, h = max(MIN_WIDTH, width), max(MIN_HEIGHT, height)
        if self.render is None or (w, h) == (self.width, self.height):
            return
        if not self.max_surface.allows(w, h):
            why = self.max_surface.refusal("the new desktop", w, h)
            if self.notify_clients is not None:
                self.notify_clients(f"{why}; the desktop stays {self.width}x{self.height}")
            return
        self.width, self.height = w, h
        self.layout = Layout(w, h)
        self.backdrop = draw_backdrop(self.layout)
        self.desktop = self.backdrop.copy()
        t = self.layout.text_box
        self.desktop[t.top : t.bottom, t.left : t.right] = self._text_pixels()
        self._text_dirty = False
        self._lit = set()  # the backdrop's icons are unlit: the next paint lights the hovered ones
        self._segments.clear()
        self._drawing.clear()
        self.window.bounds = Rect(0, BAR_H, w, h)
        self.window.x, self.window.y = self.window.clamp(self.window.x, self.window.y)
        if self.window.target is not None:
            self.window.target = self.window.clamp(*self.window.target)
        self.pos = [min(max(self.pos[0], 0.0), w - BALL), min(max(self.pos[1], float(BAR_H)), h - BALL)]
        self._paint_clock(force=True)
        self.render.resize(w, h)
        self.render.primary.pixels[:] = self.compose(self.render.primary.rect)
        self.render.damage(self.render.primary.rect)
        self._log(f"the desktop is {w}x{h} now")

    def describe(self) -> dict[str, Any]:
        w = self.window
        return {
            "name": self.name,
            "typed": self.typed,
            "strokes": self.strokes,
            "frames": self.frames,
            "window": [w.x, w.y],
            "window_moves": w.moves,
            "dragging": w.drag.owner if w.drag is not None else None,
            "log_lines": self.log.added,
            "slide": self.slide,
            "size": [self.width, self.height],
            "pastes": self.pastes,
            "video": self.video,
            "video_frames": self.video_frames,
        }


def _paint_segments(targets: tuple[np.ndarray, ...], segs: np.ndarray, colour: tuple[int, int, int], keep_out: Sequence[Rect] = ()) -> Rect:
    """Paint line segments (rows x0, y0, x1, y1) with the square brush into every target, all
    segments at once (a few numpy operations, however many segments), never inside `keep_out`
    (the widgets, which sit above the strokes); returns their bounding box."""
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
        for k in keep_out:
            k = k.intersect(Rect(l0, t0, l1, t1))
            if not k.empty():
                m[k.top - t0 : k.bottom - t0, k.left - l0 : k.right - l0] = False
        for target in targets:
            target[t0:t1, l0:l1][m] = bgrx
    return Rect(
        int(pts[:, 0].min()) - BRUSH, int(pts[:, 1].min()) - BRUSH, int(pts[:, 0].max()) + BRUSH + 1, int(pts[:, 1].max()) + BRUSH + 1
    )
