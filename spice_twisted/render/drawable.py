"""A drawable: one update of a surface area, with its encodings cached (encode once)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..codecs.bitmap import encode_bitmap
from ..wire.enums import ChannelType, ClipType, Rop, ScaleMode
from ..wire.messages import encode_body, message
from .rect import Rect

_ids = itertools.count(1)
DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY")


class Drawable:
    """Pixels for `rect` of a surface. The DRAW_COPY body is built once and shared by all pipes."""

    __slots__ = ("id", "surface_id", "rect", "pixels", "_body", "counters")

    def __init__(self, surface_id: int, rect: Rect, pixels: np.ndarray, counters: Any = None) -> None:
        self.id = next(_ids)
        self.surface_id = surface_id
        self.rect = rect
        self.pixels = pixels
        self._body: bytes | None = None
        self.counters = counters

    @property
    def nbytes(self) -> int:
        return self.rect.area * 4

    def draw_copy_body(self) -> bytes:
        if self._body is None:
            image = encode_bitmap(self.pixels, self.id)
            if self.counters is not None:
                self.counters.encoded("bitmap")
            r = self.rect
            self._body = encode_body(
                DRAW_COPY,
                {
                    "surface_id": self.surface_id,
                    "box": r.wire(),
                    "clip_type": ClipType.NONE,
                    "src_bitmap": image,
                    "src_area": Rect(0, 0, r.width, r.height).wire(),
                    "rop_descriptor": Rop.OP_PUT,
                    "scale_mode": ScaleMode.NEAREST,
                    "mask_flags": 0,
                    "mask_pos": {"x": 0, "y": 0},
                    "mask_bitmap": None,
                },
            )
            self.pixels = None  # the encoded bytes are all any pipe needs from now on
        elif self.counters is not None:
            self.counters.cache_hit()
        return self._body
