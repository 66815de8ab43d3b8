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

# Below 128x128 pixels an encode costs the reactor less than handing it to a thread and
# back (benchmarks/codecs.py: LZ encodes at the same order of speed as LZ4).
INLINE_PIXELS = 128 * 128


def encode(pixels: np.ndarray) -> Payload:
    """(height, width, 4) uint8 BGRX, C-contiguous or with a row stride -> LZ_RGB payload."""
    data = _lz.encode_lz(pixels)
    return Payload("lz", ImageType.LZ_RGB, {"data": External(data)}, 4 + len(data))
