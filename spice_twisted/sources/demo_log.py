"""The demo window's scrolling log: a fixed number of lines, each drawn in its own strip.

Every line is rendered into a strip of exactly LINE_H rows that depends on its text
alone, so scrolling the panel up by k strips (a COPY_BITS on the wire) and drawing k
new strips gives the same pixels as drawing all lines from scratch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .base import rgb_to_xrgb
from .demo_pictures import font

LINE_H = 18
LINES = 8
BG = (16, 20, 28)
FG = (150, 220, 150)


def line_pixels(text: str, width: int) -> np.ndarray:
    """One log line as a (LINE_H, width) B, G, R, X strip."""
    img = Image.new("RGB", (width, LINE_H), BG)
    if text:
        ImageDraw.Draw(img).text((4, 2), text, fill=FG, font=font(13))
    return rgb_to_xrgb(np.asarray(img))


def panel_pixels(lines: list[str], width: int) -> np.ndarray:
    """The whole panel from scratch: the last LINES lines, oldest at the top, blank above."""
    shown = ([""] * LINES + lines)[-LINES:]
    return np.concatenate([line_pixels(t, width) for t in shown])


class LogModel:
    """The lines the panel holds, and the ones added since it was last painted."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pending: list[str] = []
        self.added = 0

    def add(self, text: str) -> None:
        self.pending.append(text)

    def take(self) -> list[str]:
        """The lines to paint now (the panel keeps LINES of them: older ones would only scroll out)."""
        new, self.pending = self.pending, []
        self.lines = (self.lines + new)[-LINES:]
        self.added += len(new)
        return new
