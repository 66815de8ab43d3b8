"""Image encoders: each turns a drawable's pixels into one shared `Payload`.

`ENCODERS` is looked up at every encode (never cached by callers), so one place
names every codec and a test can count calls at this boundary by wrapping an entry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import bitmap, jpeg, lz, lz4, quic, video
from .payload import Payload

Encoder = Callable[[np.ndarray], Payload]

BITMAP = "bitmap"
LZ4 = "lz4"
LZ = "lz"
LZ_PLT = "lz_plt"  # LZ_PLT for pictures of <= 16 colours, else LZ_RGB: spice-gtk only (codecs.choice)
QUIC = "quic"  # lossless, every client decodes it; pays on photo-like content
JPEG = "jpeg"  # lossy: only for clients on slow links, only where classify.lossy_pays says so

ENCODERS: dict[str, Encoder] = {
    BITMAP: bitmap.encode,
    LZ4: lz4.encode,
    LZ: lz.encode,
    LZ_PLT: lz.encode_plt,
    QUIC: quic.encode,
    JPEG: jpeg.encode,
    # Video stream frames, one codec name per tier (codecs/video.py, render/streams.py).
    video.MJPEG: video.encode_full,
    video.MJPEG_LOW: video.encode_low,
    video.MJPEG_MIN: video.encode_min,
}

# Pixels (width x height) below which an encode runs inline on the reactor: handing a job to
# a thread and back costs more than a small encode (measured by benchmarks/codec_pool.py).
INLINE_PIXELS: dict[str, int] = {
    BITMAP: bitmap.INLINE_PIXELS,
    LZ4: lz4.INLINE_PIXELS,
    LZ: lz.INLINE_PIXELS,
    LZ_PLT: lz.INLINE_PIXELS,
    QUIC: quic.INLINE_PIXELS,
    JPEG: jpeg.INLINE_PIXELS,
    video.MJPEG: video.INLINE_PIXELS,
    video.MJPEG_LOW: video.INLINE_PIXELS,
    video.MJPEG_MIN: video.INLINE_PIXELS,
    **dict.fromkeys(video.STATEFUL, 0),  # never inline: a stream's encoder runs in its tier's video lane
}

# Codecs with a dictionary: each image may refer to earlier ones, so their encodes run in
# the one ordered lane (render/codec_pool.py OrderedLane), in commit order.
ORDERED_CODECS: frozenset[str] = frozenset({"glz", "zlib_glz"})

# Codecs whose images differ from the pixels: a client shown one holds that area lossy.
LOSSY_CODECS: frozenset[str] = frozenset({JPEG})


def encode(codec: str, pixels: np.ndarray) -> Payload:
    return ENCODERS[codec](pixels)


def shortcut(codec: str, pixels: np.ndarray, have: dict[str, Payload]) -> Callable[[], Payload] | None:
    """A cheaper encode of `codec` given the payloads a drawable already has, or None.

    The lz_plt codec's image of a picture of more than 16 colours is the lz codec's
    LZ_RGB32 image: where that is made, only the colour count (and the LZ_PLT encode of
    a picture of few colours) is left to do. (The other way round, a payload whose own
    `codec` differs from the one it was made for serves that codec too: the payload
    service keeps it under both.)"""
    rgb = have.get(LZ)
    if codec == LZ_PLT and rgb is not None:
        return lambda: lz.encode_plt_only(pixels) or rgb
    return None


__all__ = [
    "shortcut",
    "BITMAP",
    "ENCODERS",
    "INLINE_PIXELS",
    "JPEG",
    "LOSSY_CODECS",
    "LZ",
    "LZ4",
    "LZ_PLT",
    "ORDERED_CODECS",
    "QUIC",
    "Payload",
    "encode",
]
