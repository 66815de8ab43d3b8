"""The shared cursor: one shape, position and visibility that every cursor channel shows.

Shapes are ALPHA (32-bit ARGB) images with a hot spot; each shape's message body
is built once and shared by all cursor pipes, like drawables.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

_unique = itertools.count(1)

CURSOR_FLAGS_NONE = 1
CURSOR_FLAGS_CACHE_ME = 2
CURSOR_FLAGS_FROM_CACHE = 4
CURSOR_TYPE_ALPHA = 0


@dataclass(eq=False)
class CursorShape:
    width: int
    height: int
    hot_x: int
    hot_y: int
    argb: bytes  # width*height*4 bytes, B G R A in memory (ARGB32 little-endian)
    unique: int = field(default_factory=lambda: next(_unique))

    @classmethod
    def from_rgba(cls, rgba: np.ndarray, hot_x: int, hot_y: int) -> CursorShape:
        h, w = rgba.shape[:2]
        bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])
        return cls(w, h, hot_x, hot_y, bgra.tobytes())

    def wire(self, flags: int) -> dict[str, object]:
        """The Cursor struct; FROM_CACHE sends the header only."""
        return {
            "cursor_flags": flags,
            "unique": self.unique,
            "cursor_type": CURSOR_TYPE_ALPHA,
            "width": self.width,
            "height": self.height,
            "hot_x": self.hot_x,
            "hot_y": self.hot_y,
            "data": b"" if flags & CURSOR_FLAGS_FROM_CACHE else self.argb,
        }


class CursorSink(Protocol):
    def cursor_set(self, shape: CursorShape) -> None: ...
    def cursor_move(self, x: int, y: int) -> None: ...
    def cursor_hide(self) -> None: ...


class CursorService:
    """Owns the one cursor; cursor channel clients subscribe and are told of every change."""

    def __init__(self) -> None:
        self.shape: CursorShape | None = None
        self.x = 0
        self.y = 0
        self.visible = True
        self.sinks: list[CursorSink] = []
        self.sets = 0

    def set_shape(self, shape: CursorShape) -> None:
        if shape is self.shape and self.visible:
            return
        self.shape = shape
        self.visible = True
        self.sets += 1
        for s in list(self.sinks):
            s.cursor_set(shape)

    def move(self, x: int, y: int) -> None:
        self.x, self.y = x, y
        for s in list(self.sinks):
            s.cursor_move(x, y)

    def hide(self) -> None:
        if not self.visible:
            return
        self.visible = False
        for s in list(self.sinks):
            s.cursor_hide()

    def subscribe(self, sink: CursorSink) -> None:
        self.sinks.append(sink)

    def unsubscribe(self, sink: CursorSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)


def arrow_cursor() -> CursorShape:
    """A plain 16x24 arrow (black, white outline), hot spot at its tip."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (16, 24), (0, 0, 0, 0))
    ImageDraw.Draw(img).polygon(
        [(0, 0), (0, 20), (5, 15), (9, 23), (12, 22), (8, 14), (14, 14)], fill=(0, 0, 0, 255), outline=(255, 255, 255, 255)
    )
    return CursorShape.from_rgba(np.asarray(img), 0, 0)
