"""The dashboard's picture of the shared display: one small JPEG for every dashboard viewer.

Made from the render service's primary surface (what every client is being sent), only
when someone asks, at most once per `min_interval` seconds, and not at all while the
display does not change: every viewer in that second gets the same cached bytes, and
viewers asking while it is being made wait for that one encode. The reactor only copies
the pixels (every `step`th row and column of a large surface, so the copy stays small);
scaling and JPEG encoding run in the reactor's thread pool.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from twisted.internet import defer, threads

MAX_SIZE = (400, 300)  # the thumbnail fits in this box, keeping the display's shape
MIN_INTERVAL = 1.0  # seconds: at most one encode this often, however many viewers
QUALITY = 80


@dataclass(frozen=True)
class Picture:
    data: bytes
    version: tuple[int, ...]  # the render state it shows (see Thumbnail.version)
    made: float  # monotonic time of the copy
    width: int
    height: int

    @property
    def etag(self) -> str:
        return '"' + "-".join(str(v) for v in self.version) + '"'


def thumbnail_size(width: int, height: int, box: tuple[int, int] = MAX_SIZE) -> tuple[int, int]:
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def reduced_copy(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A copy of every n-th row and column of `pixels`, n as large as leaves at least twice
    the thumbnail's width and height: the one cost on the reactor stays small on a 4K
    surface, and the scaling that follows still averages over real pixels."""
    h, w = pixels.shape[:2]
    step = max(1, min(w // (2 * size[0]), h // (2 * size[1])))
    if step == 1:
        return pixels.copy()
    # One 32-bit element a pixel: a strided copy of 4-byte items is several times faster
    # than of 1-byte ones (benchmarks/thumbnail.py).
    return pixels.view(np.uint32)[::step, ::step].copy().view(np.uint8)


def encode_jpeg(bgrx: np.ndarray, size: tuple[int, int], quality: int = QUALITY) -> bytes:
    """Surface pixels (B, G, R, X rows) scaled to `size` (area averaging) as a JPEG."""
    rgb = np.ascontiguousarray(bgrx[..., 2::-1])
    img = Image.fromarray(rgb, "RGB")
    if img.size != size:
        img = img.resize(size, Image.Resampling.BOX)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, subsampling=0)  # 4:4:4: sharp colour edges (text, window borders)
    return out.getvalue()


class Thumbnail:
    def __init__(self, render: Any, reactor: Any, min_interval: float = MIN_INTERVAL) -> None:
        self.render, self.reactor, self.min_interval = render, reactor, min_interval
        self.picture: Picture | None = None
        self.encodes = 0
        self._pending: list[defer.Deferred[Picture]] | None = None

    def version(self) -> tuple[int, ...]:
        """Changes whenever the surface's pixels may have: a frame, a COPY_BITS, a resize."""
        c = self.render.counters
        return (c.frames, c.copies, c.resizes, self.render.width, self.render.height)

    def get(self) -> defer.Deferred[Picture]:
        """The current picture: the cached one if the display did not change or it is
        younger than `min_interval`, else a new one (made once for all who ask now)."""
        pic = self.picture
        now = time.monotonic()
        if pic is not None and (pic.version == self.version() or now - pic.made < self.min_interval):
            return defer.succeed(pic)
        waiter: defer.Deferred[Picture] = defer.Deferred()
        if self._pending is not None:
            self._pending.append(waiter)
            return waiter
        self._pending = [waiter]
        self._make(now)
        return waiter

    def _make(self, now: float) -> None:
        surface = self.render.primary
        w, h = surface.width, surface.height
        size = thumbnail_size(w, h)
        pixels = reduced_copy(surface.pixels, size)  # on the reactor: the source may paint next turn
        version = self.version()
        self.encodes += 1
        pool = getattr(self.reactor, "getThreadPool", None)
        if pool is None:  # a test clock: encode here
            d = defer.maybeDeferred(encode_jpeg, pixels, size)
        else:
            d = threads.deferToThreadPool(self.reactor, pool(), encode_jpeg, pixels, size)
        d.addCallbacks(lambda data: self._done(Picture(data, version, now, *size)), self._failed)

    def _done(self, pic: Picture) -> None:
        self.picture = pic
        waiters, self._pending = self._pending or [], None
        for w in waiters:
            w.callback(pic)

    def _failed(self, failure: Any) -> None:
        waiters, self._pending = self._pending or [], None
        for w in waiters:
            w.errback(failure)
