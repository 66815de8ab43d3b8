"""The uncompressed BITMAP image (32-bit, top-down): what every SPICE client decodes.

A drawable's pixels are already one `bytes` object (render/surface.py `crop`), so the
"encode" sends those bytes as they are: no copy, which is why it always runs inline.
"""

from __future__ import annotations

import numpy as np

from ..wire.enums import BitmapFlags, BitmapFormat, ImageType
from ..wire.schema import External
from .payload import Payload

INLINE_PIXELS = 1 << 62  # always inline: there is nothing to compute


def encode(pixels: np.ndarray) -> Payload:
    height, width = pixels.shape[:2]
    data = pixel_bytes(pixels)
    fields = {
        "format": BitmapFormat.BIT32,
        "bitmap_flags": BitmapFlags.TOP_DOWN,
        "x": width,
        "y": height,
        "stride": width * 4,
        "palette": 0,
        "data": External(data),
    }
    return Payload("bitmap", ImageType.BITMAP, fields, 18 + len(data))


def pixel_bytes(pixels: np.ndarray) -> bytes:
    """The `bytes` object behind `pixels` when it is one (no copy), else a copy."""
    base = pixels
    while base is not None and not isinstance(base, bytes):
        base = base.base
    if isinstance(base, bytes) and len(base) == pixels.nbytes and pixels.flags.c_contiguous:
        return base
    return np.ascontiguousarray(pixels).tobytes()
