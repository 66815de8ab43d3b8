"""The X pointer's shape (XFIXES cursor images) and position, as shared cursor shapes.

XFIXES tells when the displayed cursor changes (CursorNotify on the root window) and
hands its image (GetCursorImage: ARGB32 with premultiplied alpha, plus the hot spot
and a serial that names the image). SPICE ALPHA cursors are straight alpha, so the
colour is divided back out. Shapes are kept by serial, so a cursor X shows again (the
arrow after the I-beam) is the same CursorShape object and clients draw it from their
cursor cache.

Two X server habits are handled here:
- With the SECURITY extension (on in Xorg and Xvfb builds), GetCursorImage fails with
  BadAccess when the client that made the cursor has gone (`xsetroot -cursor_name` in
  an .xinitrc): that image cannot be read, so a plain arrow stands in for it.
- An animated cursor shows as a 1x1 image with serial 0 for a moment, then as its
  frames: the moment is skipped (the previous shape stays).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import xcffib
import xcffib.xfixes

from ..render.cursor import CursorShape, arrow_cursor

SHAPE_CACHE = 64
MAX_SIDE = 512  # SPICE cursors' width/height are u16, clients draw far smaller ones


def shape_from_argb(argb: np.ndarray, width: int, height: int, hot_x: int, hot_y: int) -> CursorShape:
    """Premultiplied ARGB32 words (width*height) -> a straight-alpha CursorShape."""
    words = np.asarray(argb, dtype=np.uint32).reshape(height, width)
    a = (words >> 24).astype(np.uint16)
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    for i, shift in enumerate((16, 8, 0)):
        c = ((words >> shift) & 0xFF).astype(np.uint16)
        straight = np.where(a > 0, np.minimum(255, (c * 255 + a // 2) // np.maximum(a, 1)), 0)
        rgba[..., i] = straight.astype(np.uint8)
    rgba[..., 3] = a.astype(np.uint8)
    return CursorShape.from_rgba(rgba, min(max(hot_x, 0), width - 1), min(max(hot_y, 0), height - 1))


KEEP = object()  # current(): the shape has not really changed


class CursorReader:
    """Reads the current cursor from X (capture thread); remembers shapes by serial."""

    def __init__(self, conn: Any, root: int) -> None:
        self.conn, self.root = conn, root
        self.xfixes = conn(xcffib.xfixes.key)
        self.shapes: OrderedDict[int, CursorShape] = OrderedDict()
        self.images = 0  # GetCursorImage calls that returned a new shape
        self.unreadable = 0  # cursors X would not show us (BadAccess)
        self._stand_in: CursorShape | None = None

    def stand_in(self) -> CursorShape:
        if self._stand_in is None:
            self._stand_in = arrow_cursor()
        return self._stand_in

    def select(self) -> None:
        self.xfixes.SelectCursorInput(self.root, xcffib.xfixes.CursorNotifyMask.DisplayCursor)

    def current(self) -> tuple[Any, tuple[int, int]]:
        """The shape X shows now (None if it shows nothing, KEEP for no change) and the
        pointer position."""
        try:
            r = self.xfixes.GetCursorImage().reply()
        except xcffib.Error:  # BadAccess: its maker left (see above)
            self.unreadable += 1
            p = self.conn.core.QueryPointer(self.root).reply()
            return self.stand_in(), (p.root_x, p.root_y)
        pos = (r.x, r.y)
        if r.cursor_serial == 0 and r.width * r.height <= 1:
            return KEEP, pos
        if r.width == 0 or r.height == 0:
            return None, pos
        shape = self.shapes.get(r.cursor_serial)
        if shape is not None:
            self.shapes.move_to_end(r.cursor_serial)
            return shape, pos
        w, h = min(r.width, MAX_SIDE), min(r.height, MAX_SIDE)
        raw = np.frombuffer(r.cursor_image.buf(), dtype="<u4", count=r.width * r.height).reshape(r.height, r.width)
        shape = shape_from_argb(raw[:h, :w], w, h, r.xhot, r.yhot)
        if not np.any(np.frombuffer(shape.argb, dtype=np.uint8)[3::4]):
            shape = None  # fully transparent: X hides the pointer
        self.images += 1
        if shape is not None:
            self.shapes[r.cursor_serial] = shape
            while len(self.shapes) > SHAPE_CACHE:
                self.shapes.popitem(last=False)
        return shape, pos
