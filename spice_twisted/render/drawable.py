"""A drawable: one update of a surface area, encoded at most once and shared by every pipe."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from twisted.python.failure import Failure

from ..codecs.bitmap import encode_bitmap
from ..wire.enums import ChannelType, ClipType, Rop, ScaleMode
from ..wire.messages import encode_body, message
from .rect import Rect

if TYPE_CHECKING:
    from .encoder import Encoder
    from .service import RenderCounters

_ids = itertools.count(1)
DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY")


def draw_copy_body(surface_id: int, rect: Rect, pixels: np.ndarray, image_id: int) -> bytes:
    """The whole DRAW_COPY body for an uncompressed bitmap (runs in the encoder pool)."""
    return encode_body(
        DRAW_COPY,
        {
            "surface_id": surface_id,
            "box": rect.wire(),
            "clip_type": ClipType.NONE,
            "src_bitmap": encode_bitmap(pixels, image_id),
            "src_area": Rect(0, 0, rect.width, rect.height).wire(),
            "rop_descriptor": Rop.OP_PUT,
            "scale_mode": ScaleMode.NEAREST,
            "mask_flags": 0,
            "mask_pos": {"x": 0, "y": 0},
            "mask_bitmap": None,
        },
    )


class Drawable:
    """Pixels for `rect` of a surface, copied at commit time.

    `body()` returns the encoded DRAW_COPY body, or None while the one encode is
    running; every pipe that asked is called back when it is done.
    """

    __slots__ = ("id", "surface_id", "rect", "pixels", "_body", "_waiters", "counters", "encoder", "failed")

    def __init__(self, surface_id: int, rect: Rect, pixels: np.ndarray, counters: RenderCounters, encoder: Encoder) -> None:
        self.id = next(_ids)
        self.surface_id = surface_id
        self.rect = rect
        self.pixels: np.ndarray | None = pixels
        self._body: bytes | None = None
        self._waiters: list[Callable[[], None]] | None = None
        self.counters = counters
        self.encoder = encoder
        self.failed = False  # the encode raised: pipes drop this drawable (and log it once)

    @property
    def nbytes(self) -> int:
        """What this drawable holds in memory now (encoded bytes once encoded)."""
        return len(self._body) if self._body is not None else self.rect.area * 4

    @property
    def encoded(self) -> bool:
        return self._body is not None

    def body(self, on_ready: Callable[[], None]) -> tuple[bytes | None, bool]:
        """(body or None, whether this call started the encode)."""
        if self._body is not None or self.failed:
            return self._body, False
        if self._waiters is not None:  # already encoding for another pipe
            self._waiters.append(on_ready)
            return None, False
        self._waiters = [on_ready]
        pixels = self.pixels
        assert pixels is not None
        try:
            job = self.encoder.run(lambda: draw_copy_body(self.surface_id, self.rect, pixels, self.id), self.rect.area * 4)
        except Exception:
            self._failed(Failure(), notify=False)
            return None, True
        if isinstance(job, bytes):
            self._done(job, notify=False)
            return job, True
        job.addCallbacks(self._done, self._failed)
        return None, True

    def _failed(self, failure: Failure, notify: bool = True) -> None:
        self.counters.encode_failed(failure)
        self.failed = True
        self.pixels = None
        waiters, self._waiters = self._waiters or [], None
        if notify:
            for cb in waiters:
                cb()

    def _done(self, body: bytes, notify: bool = True) -> None:
        self._body = body
        self.pixels = None  # the encoded bytes are all any pipe needs from now on
        self.counters.encoded("bitmap")
        waiters, self._waiters = self._waiters or [], None
        if notify:
            for cb in waiters:
                cb()
