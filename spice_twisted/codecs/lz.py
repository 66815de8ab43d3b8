"""SPICE LZ images (LZ_RGB32): what every SPICE client decodes, spice-html5 included.

The bytes come from our C extension (`_native/lz.c`, which releases the GIL while it
encodes). Payload: the LZ stream (a 28-byte header of big-endian words -- magic "LZ  ",
version 1.1, type RGB32, width, height, stride width*4, top_down 1 -- then literal runs
and back-references on B,G,R; docs/codecs.md). The X byte is not sent: clients fill it.
"""

from __future__ import annotations

import numpy as np

from ..wire.enums import ImageType
from ..wire.schema import External
from ._native import load
from .payload import Payload

_lz = load("_lz")

# Inline below 96x96 pixels: there an LZ encode takes about 16-20 us, what LZ4 takes at its
# 128x128 threshold (measured here: 128x128 text 28 us, photo or noise 35 us, against LZ4's
# 17 and 9 us); above, the codec pool's threads do it.
INLINE_PIXELS = 96 * 96


def encode(pixels: np.ndarray) -> Payload:
    """(height, width, 4) uint8 BGRX, C-contiguous or with a row stride -> LZ_RGB payload."""
    data = _lz.encode_lz(pixels)
    return Payload("lz", ImageType.LZ_RGB, {"data": External(data)}, 4 + len(data))
