"""QUIC images: lossless, in the format spice-gtk and spice-html5 decode (spice-common quic.c).

The bytes come from our C extension (`_native/quic.c`, which says how the format works);
its encode releases the GIL, so the codec pool's threads run in parallel. The payload is
the image's data field (u32 data_size + the QUIC words). QUIC predicts each pixel from its
neighbours, so it pays on photos and gradients (about 1.5 bytes a pixel on photos where
raw is 4) and is the lossless codec every client decodes; numbers in docs/codecs.md.
"""

from __future__ import annotations

import numpy as np

from ..wire.enums import ImageType
from ..wire.schema import External
from ._native import load
from .payload import Payload

_quic = load("_quic")

# Below 32x32 pixels a QUIC encode (23 us for a 32x32 photo, less on flat content) costs the
# reactor no more than a hand-off to the codec pool (about 20 us of reactor CPU): both measured
# by benchmarks/codecs.py, "Encodes by size" in docs/performance.md.
INLINE_PIXELS = 32 * 32


def encode(pixels: np.ndarray) -> Payload:
    """`pixels`: H x W x 4 uint8 B,G,R,X (the X byte is not sent); rows may be strided."""
    if pixels.strides[1:] != (4, 1):  # pixels not side by side (a column slice): the C wants them so
        pixels = np.ascontiguousarray(pixels)
    data = _quic.encode(pixels)
    return Payload("quic", ImageType.QUIC, {"data": External(data)}, 4 + len(data))


def decode(data: bytes) -> np.ndarray:
    """The reverse (H x W x 4 B,G,R,0), by our own C decoder: for tests and the benchmark."""
    _alpha, width, height, pixels = _quic.decode(data)
    return np.frombuffer(pixels, np.uint8).reshape(height, width, 4)
