"""SPICE LZ images: LZ_RGB32, what every SPICE client decodes, spice-html5 included, and
LZ_PLT (palette indices) for pictures of at most 16 colours, which spice-gtk decodes.

The bytes come from our C extension (`_native/lz.c`, which releases the GIL while it
encodes). LZ_RGB payload: the LZ stream (a 28-byte header of big-endian words -- magic
"LZ  ", version 1.1, type RGB32, width, height, stride width*4, top_down 1 -- then literal
runs and back-references on B,G,R; docs/codecs.md). The X byte is not sent: clients fill it.

LZ_PLT: the same header with type PLT1_BE (2 colours: 8 pixels a byte) or PLT4_BE (3 to 16:
2 a byte) and stride the packed row's bytes, then byte-oriented LZ over the packed
indices, plus a palette. On terminal text it takes 0.3-0.8x LZ_RGB32's bytes (a byte
match covers 8 or 2 pixels; docs/codecs.md); PLT8 saved nothing there, so it is not built.
"""

from __future__ import annotations

import numpy as np

from ..wire.enums import BitmapFlags, ImageType
from ..wire.messages import PALETTE
from ..wire.schema import External
from ..wire.schema import encode as encode_wire
from ._native import load
from .payload import Payload

_lz = load("_lz")

# Inline below 96x96 pixels: there an LZ encode takes about 16-20 us, what LZ4 takes at its
# 128x128 threshold (measured here: 128x128 text 28 us, photo or noise 35 us, against LZ4's
# 17 and 9 us); above, the codec pool's threads do it.
INLINE_PIXELS = 96 * 96

# Most colours an LZ_PLT picture has (PLT4); a colour count stops at the next one.
PLT_MAX_COLOURS: int = _lz.PLT_MAX_COLOURS


def encode(pixels: np.ndarray) -> Payload:
    """(height, width, 4) uint8 BGRX, C-contiguous or with a row stride -> LZ_RGB payload."""
    data = _lz.encode_lz(pixels)
    return Payload("lz", ImageType.LZ_RGB, {"data": External(data)}, 4 + len(data))


def encode_plt_only(pixels: np.ndarray) -> Payload | None:
    """The LZ_PLT payload of a picture of at most 16 colours, else None (one pass that
    stops at the 17th colour)."""
    r = _lz.encode_lz_plt(pixels)
    if r is None:
        return None
    _typ, data, palette = r
    ents = np.frombuffer(palette, "<u4").tolist()
    pal = encode_wire(PALETTE, {"unique": 0, "num_ents": len(ents), "ents": ents})
    body = {"lz_plt_flags": int(BitmapFlags.TOP_DOWN), "data_size": len(data), "data": External(data + pal)}
    return Payload("lz_plt", ImageType.LZ_PLT, {"lz_plt": body}, 9 + len(data) + len(pal))


def encode_plt(pixels: np.ndarray) -> Payload:
    """The "lz_plt" codec (clients that decode LZ_PLT): LZ_PLT where the picture has at
    most 16 colours, else LZ_RGB32. The colour count decides: on 2-16 colour pictures the
    packed indices were never larger than LZ_RGB32 (docs/codecs.md)."""
    return encode_plt_only(pixels) or encode(pixels)
