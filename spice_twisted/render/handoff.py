"""The hand-off between a capture thread and the reactor (the X11 and VM sources).

A capture thread never touches the render service: it `publish()`es changed pixels
into a staging copy of the screen under a lock, and wakes the reactor once; the
reactor moves every staged area into the surface and marks it damaged, on its own
thread, as one batch. Staging holds at most one screen, however fast the thread
publishes; a burst costs one wake-up. Cursor changes and resizes cross the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .rect import Rect

if TYPE_CHECKING:
    from .cursor import CursorService, CursorShape
    from .service import RenderService


class FrameHandoff:
    def __init__(self, reactor: Any, render: RenderService, cursor: CursorService | None = None) -> None:
        self.reactor, self.render, self.cursor = reactor, render, cursor
        self._lock = threading.Lock()
        self._staging = np.zeros_like(render.primary.pixels)
        self._rects: list[Rect] = []
        self._size: tuple[int, int] | None = None  # a resize waiting for the reactor
        self._calls: list[Callable[[], None]] = []  # cursor changes, in order
        self._woken = False
        self.wakeups = 0
        self.published = 0

    # --- any thread ----------------------------------------------------------------------
    def publish(self, rect: Rect, pixels: np.ndarray) -> None:
        """`pixels` (h, w, 4 B G R X) now show at `rect` of the screen; copied here."""
        with self._lock:
            h, w = self._staging.shape[:2]
            r = rect.intersect(Rect(0, 0, w, h))
            if r.empty():
                return
            src = pixels[r.top - rect.top : r.bottom - rect.top, r.left - rect.left : r.right - rect.left]
            self._staging[r.top : r.bottom, r.left : r.right] = src
            self._rects.append(r)
            self.published += 1
            self._wake()

    def resize(self, width: int, height: int) -> None:
        """The screen has a new size; what was staged for the old one is dropped."""
        with self._lock:
            self._size = (width, height)
            self._staging = np.zeros((height, width, 4), dtype=np.uint8)
            self._rects = []
            self._wake()

    def cursor_set(self, shape: CursorShape) -> None:
        self._call(lambda: self.cursor.set_shape(shape) if self.cursor else None)

    def cursor_move(self, x: int, y: int) -> None:
        self._call(lambda: self.cursor.move(x, y) if self.cursor else None)

    def cursor_hide(self) -> None:
        self._call(lambda: self.cursor.hide() if self.cursor else None)

    def _call(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._calls.append(fn)
            self._wake()

    def _wake(self) -> None:
        # under the lock: one callFromThread per batch, however many publishes
        if not self._woken:
            self._woken = True
            self.wakeups += 1
            self.reactor.callFromThread(self._apply)

    # --- the reactor ---------------------------------------------------------------------
    def _apply(self) -> None:
        with self._lock:
            self._woken = False
            size, self._size = self._size, None
            rects, self._rects = self._rects, []
            calls, self._calls = self._calls, []
            if size is not None:
                self.render.resize(*size)
            pixels = self.render.primary.pixels
            if pixels.shape == self._staging.shape:
                for r in rects:
                    pixels[r.top : r.bottom, r.left : r.right] = self._staging[r.top : r.bottom, r.left : r.right]
            else:
                rects = []  # staged for a size the surface no longer has
        for r in rects:
            self.render.damage(r)
        if size is not None:
            self.render.damage(self.render.primary.rect)
        for fn in calls:
            fn()
