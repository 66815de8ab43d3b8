"""The uncompressed BITMAP image (32-bit, top-down): what every SPICE client decodes.

Its one "encode" is a copy of the pixels into the bytes object every pipe then shares
(Twisted's transports write only bytes).
"""

from __future__ import annotations

import numpy as np

from ..wire.enums import BitmapFlags, BitmapFormat, ImageType
from ..wire.schema import External
from .payload import Payload

# A copy of 256x256 pixels (256 KiB) takes about as long as a thread hand-off.
INLINE_PIXELS = 256 * 256


def encode(pixels: np.ndarray) -> Payload:
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).tobytes()
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
