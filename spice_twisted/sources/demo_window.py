"""The demo's one window: its picture (welcome text, connect lines, log, slideshow), its
place on the desktop, and who drags it.

The window is opaque and the top layer, so its pixels on the surface are always exactly
`pixels` at (x, y): a move is a pure copy of them (COPY_BITS), and its content changes
(a log line, a slide) are painted into `pixels` and copied to the same place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..connect import TLS_CA_NOTE, viewer_command
from ..render.rect import Rect
from .base import rgb_to_xrgb
from .demo_log import LINE_H, LINES, panel_pixels
from .demo_pictures import SLIDE_H, SLIDE_W, font, slide

WIN_W, WIN_H = 580, 404
TITLE_H = 28
# Inside the window (window coordinates).
TEXT_TOP, TEXT_BOTTOM = 36, 238
LOG = Rect(16, 248, 388, 248 + LINES * LINE_H)
SLIDE = Rect(404, 248, 404 + SLIDE_W, 248 + SLIDE_H)
MAX_URLS = 4
BG, FRAME, TITLE = (245, 245, 240), (40, 40, 60), (70, 90, 150)


def connect_lines(urls: Sequence[str], ca_file: str | None = None) -> list[str]:
    """The viewer commands to show, as the start-up block has them (TLS ones with the CA)."""
    if not urls:
        return []
    lines = ["Connect more viewers (remote-viewer, from virt-viewer):"]
    for url in urls[:MAX_URLS]:
        lines.append("  " + viewer_command(url, ca_file) + ("  (TLS)" if "tls-port=" in url else ""))
    if len(urls) > MAX_URLS:
        lines.append(f"  ... and {len(urls) - MAX_URLS} more: see the server log")
    if not ca_file and any("tls-port=" in url for url in urls):
        lines.append(f"  ({TLS_CA_NOTE})")
    return lines


def frame_pixels(urls: Sequence[str], ca_file: str | None = None) -> np.ndarray:
    """The window without its live parts (log lines, slide): title bar, text, panel frames."""
    img = Image.new("RGB", (WIN_W, WIN_H), BG)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, WIN_W - 1, WIN_H - 1], outline=FRAME, width=2)
    d.rectangle([0, 0, WIN_W - 1, TITLE_H], fill=TITLE)
    d.text((12, 4), "Welcome  (drag me by this bar)", fill=(255, 255, 255), font=font(18))
    lines = [
        "You are looking at a SPICE display served by Twisted.",
        "Every connected client sees this same desktop.",
        "Drag to paint in your own colour; type into the line below.",
        "",
        *connect_lines(urls, ca_file),
    ]
    # The longest line sets the size, so a long URL still fits the window.
    size = 17
    while size > 10 and max(d.textlength(line, font=font(size)) for line in lines) > WIN_W - 32:
        size -= 1
    step = min(24, (TEXT_BOTTOM - TEXT_TOP) // len(lines))
    for i, line in enumerate(lines):
        d.text((16, TEXT_TOP + step * i), line, fill=(20, 20, 30), font=font(size))
    for r in (LOG, SLIDE):
        d.rectangle([r.left - 3, r.top - 3, r.right + 2, r.bottom + 2], outline=FRAME, width=2)
    d.text((SLIDE.left, SLIDE.bottom + 8), "a slideshow of 4 fixed pictures", fill=(60, 60, 70), font=font(12))
    return rgb_to_xrgb(np.asarray(img))


def window_pixels(urls: Sequence[str], lines: list[str], slide_k: int, ca_file: str | None = None) -> np.ndarray:
    """The whole window from scratch, for a given log and slide."""
    px = frame_pixels(urls, ca_file)
    px[LOG.top : LOG.bottom, LOG.left : LOG.right] = panel_pixels(lines, LOG.width)
    px[SLIDE.top : SLIDE.bottom, SLIDE.left : SLIDE.right] = slide(slide_k)
    return px


@dataclass
class Drag:
    """The one drag in progress: the first client to press on the title bar owns it."""

    owner: int  # session id
    grab_x: int  # where in the window it was grabbed
    grab_y: int


class DemoWindow:
    def __init__(self, urls: Sequence[str], x: int, y: int, bounds: Rect, ca_file: str | None = None) -> None:
        self.bounds = bounds  # where the window may be: wholly inside, so it is always whole
        self.pixels = window_pixels(urls, [], 0, ca_file)
        self.x, self.y = self.clamp(x, y)
        self.target: tuple[int, int] | None = None  # where a drag wants it at the next frame
        self.drag: Drag | None = None
        self.moves = 0

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.x + WIN_W, self.y + WIN_H)

    @property
    def title_rect(self) -> Rect:
        return Rect(self.x, self.y, self.x + WIN_W, self.y + TITLE_H)

    def on_screen(self, r: Rect) -> Rect:
        """A rect in window coordinates, on the screen."""
        return Rect(r.left + self.x, r.top + self.y, r.right + self.x, r.bottom + self.y)

    def clamp(self, x: int, y: int) -> tuple[int, int]:
        b = self.bounds
        return min(max(x, b.left), b.right - WIN_W), min(max(y, b.top), b.bottom - WIN_H)

    # --- dragging ----------------------------------------------------------------------
    def press(self, session: int, x: int, y: int) -> bool:
        """Button 1 went down at (x, y): True if it grabbed the title bar (it then owns the drag)."""
        if self.drag is not None or not self.title_rect.contains(Rect(x, y, x + 1, y + 1)):
            return False
        self.drag = Drag(session, x - self.x, y - self.y)
        return True

    def motion(self, session: int, x: int, y: int) -> bool:
        """The pointer of `session` is at (x, y): True if it is dragging the window."""
        d = self.drag
        if d is None or d.owner != session:
            return False
        self.target = self.clamp(x - d.grab_x, y - d.grab_y)
        return True

    def release(self, session: int) -> bool:
        """True if `session` owned the drag (now ended; the last target still applies)."""
        if self.drag is None or self.drag.owner != session:
            return False
        self.drag = None
        return True

    def take_target(self) -> tuple[int, int] | None:
        """Where to move to now (once a frame), if anywhere new."""
        t, self.target = self.target, None
        return t if t is not None and t != (self.x, self.y) else None


def subtract(r: Rect, hole: Rect) -> list[Rect]:
    """r minus hole as at most four disjoint rects (bands above and below, strips beside)."""
    h = r.intersect(hole)
    if h.empty():
        return [] if r.empty() else [r]
    pieces = [
        Rect(r.left, r.top, r.right, h.top),
        Rect(r.left, h.bottom, r.right, r.bottom),
        Rect(r.left, h.top, h.left, h.bottom),
        Rect(h.right, h.top, r.right, h.bottom),
    ]
    return [p for p in pieces if not p.empty()]
