"""The uncompressed BITMAP image (32-bit, top-down): what every SPICE client decodes."""

from __future__ import annotations

import numpy as np

from ..wire.enums import BitmapFlags, BitmapFormat, ImageType
from ..wire.messages import IMAGE
from ..wire.schema import encode


def encode_bitmap(pixels: np.ndarray, image_id: int) -> bytes:
    """Image descriptor + bitmap header + rows, as one bytes object shared by every pipe."""
    height, width = pixels.shape[:2]
    return encode(
        IMAGE,
        {
            "id": image_id,
            "type": ImageType.BITMAP,
            "flags": 0,
            "width": width,
            "height": height,
            "format": BitmapFormat.BIT32,
            "bitmap_flags": BitmapFlags.TOP_DOWN,
            "x": width,
            "y": height,
            "stride": width * 4,
            "palette": 0,
            "data": np.ascontiguousarray(pixels).tobytes(),
        },
    )
