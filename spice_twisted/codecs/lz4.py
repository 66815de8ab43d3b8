"""LZ4 images, in the layout spice-gtk decodes (spice-common canvas_get_lz4).

Payload: u8 top_down, u8 bitmap format, then blocks of {big-endian u32 size, raw LZ4
block}; the client decodes them one after the other into rows of width*4 bytes. We
send one independent block per image, made by the `lz4` library (which releases the
GIL while it compresses, so the codec pool's threads run in parallel).
"""

from __future__ import annotations

import struct

import lz4.block
import numpy as np

from ..wire.enums import BitmapFormat, ImageType
from ..wire.schema import External
from .payload import Payload

# Below 128x128 pixels an LZ4 encode (about 20 us) costs the reactor no more than handing
# it to a thread and back (benchmarks/codec_pool.py, docs/performance.md).
INLINE_PIXELS = 128 * 128


def encode(pixels: np.ndarray) -> Payload:
    block = lz4.block.compress(np.ascontiguousarray(pixels), store_size=False)
    data = struct.pack(">BBI", 1, BitmapFormat.BIT32, len(block)) + block
    return Payload("lz4", ImageType.LZ4, {"data": External(data)}, 4 + len(data))


def decode(payload: bytes, width: int, height: int) -> np.ndarray:
    """The reverse, as spice-gtk does it: used by tests and the benchmark to check output."""
    top_down, fmt = payload[0], payload[1]
    if fmt != BitmapFormat.BIT32:
        raise ValueError(f"unsupported LZ4 bitmap format {fmt}")
    out, pos, size = bytearray(), 2, width * height * 4
    while pos < len(payload):
        (n,) = struct.unpack_from(">I", payload, pos)
        out += lz4.block.decompress(payload[pos + 4 : pos + 4 + n], uncompressed_size=size - len(out))
        pos += 4 + n
    img = np.frombuffer(bytes(out), dtype=np.uint8).reshape(height, width, 4)
    return img if top_down else img[::-1]
