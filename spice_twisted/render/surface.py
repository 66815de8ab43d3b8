"""A drawing surface: pixels in a numpy array, in SPICE 32-bit xRGB memory order (B, G, R, X)."""

from __future__ import annotations

import numpy as np

from ..wire.enums import SurfaceFormat
from .rect import Rect


class Surface:
    def __init__(self, surface_id: int, width: int, height: int, fmt: SurfaceFormat = SurfaceFormat.FMT_32_xRGB) -> None:
        if not (0 < width <= 16384 and 0 < height <= 16384):
            raise ValueError(f"surface size {width}x{height} out of range")
        self.id, self.width, self.height, self.format = surface_id, width, height, fmt
        self.pixels = np.zeros((height, width, 4), dtype=np.uint8)

    @property
    def rect(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    def crop(self, r: Rect) -> np.ndarray:
        """A read-only copy of the pixels of r, backed by one `bytes` object: the one copy a
        drawable costs (on the reactor thread). The raw bitmap codec sends those very bytes,
        the other codecs read them from their threads."""
        data = self.pixels[r.top : r.bottom, r.left : r.right].tobytes()
        return np.frombuffer(data, dtype=np.uint8).reshape(r.height, r.width, 4)
