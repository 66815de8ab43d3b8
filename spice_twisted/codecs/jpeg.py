"""JPEG images: plain JFIF in the image's data field (u32 data_size + data), lossy.

spice-gtk decodes them with libjpeg (spice-common canvas_get_jpeg, which checks that
the JFIF's size equals the descriptor's) and spice-html5 with the browser. We encode
with simplejpeg (libjpeg-turbo, linked into its PyPI wheels): it reads our B,G,R,X
pixels as they are (colorspace BGRX, no copy, strided views too) and releases the GIL
while it compresses, so the codec pool's threads run in parallel. Chroma is 4:2:0 like
upstream's (libjpeg's defaults with the quality set). Why this binding, and the
numbers: docs/codecs.md. Only photo-like content pays (codecs/classify.py).
"""

from __future__ import annotations

import numpy as np
import simplejpeg

from ..wire.enums import ImageType
from ..wire.schema import External
from .payload import Payload

DEFAULT_QUALITY = 85  # upstream's jpeg_quality (server/dcc.cpp)

# Below 64x64 pixels a JPEG encode (about 18 us: headers and tables dominate) costs the
# reactor no more than a hand-off to the codec pool (benchmarks/codecs.py, docs/codecs.md).
INLINE_PIXELS = 64 * 64

_quality = DEFAULT_QUALITY


def set_quality(quality: int) -> None:
    """The quality every later encode uses (the server's --jpeg-quality, set at start)."""
    global _quality
    _quality = check_quality(quality)


def quality() -> int:
    return _quality


def check_quality(quality: int) -> int:
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be a whole number 1-100, not {quality!r}")
    return quality


def encode(pixels: np.ndarray, quality: int | None = None) -> Payload:
    """`pixels`: H x W x 4 uint8 B,G,R,X (the X byte is ignored). `quality` overrides the setting."""
    q = _quality if quality is None else check_quality(quality)
    data = simplejpeg.encode_jpeg(pixels, quality=q, colorspace="BGRX", colorsubsampling="420")
    return Payload("jpeg", ImageType.JPEG, {"data": External(data)}, 4 + len(data))
