"""Is an image photo-like (JPEG pays) or text, flat UI or noise (it does not)? Decided fast.

The measure is upstream's "graduality" (spice-server's bitmap_get_graduality_level,
which picks QUIC and so JPEG over LZ): look at small squares of the image, each a pixel
with its right, lower and lower-right neighbours, and score every neighbour pair: the
same colour +0.5, a contrast (some channel differs by 60 or more) +1.0, a small
difference -0.25; squares of one colour score 0. The mean per pair is negative only
where small differences (soft edges, texture, gradients with every pixel a new colour)
outnumber equal pixels and sharp edges: below -0.03 the image is photo-like.
Text on flat backgrounds (equal pixels and glyph edges), flat UI (squares of one
colour) and noise (contrast everywhere) stay above it.

Our own vectorised sampling: upstream walks every 15th pixel of the whole image; we
score a fixed grid of at most ROWS x COLS squares spread over the image, each row's
columns shifted so regular content (text lines, tiles) does not alias with the grid.
Its cost does not grow with the image (numbers in docs/codecs.md), so it runs on
every drawable. Small images never go lossy: JPEG's tables alone are about 600 bytes,
and a lossy image must be sent again lossless later (MIN_PIXELS, MIN_SIDE below).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Photo-like below this mean score per neighbour pair (upstream's GRADUAL_HIGH_RGB24_TH).
PHOTO_SCORE = -0.03
CONTRAST = 60  # a channel difference that counts as an edge (upstream's CONTRAST_TH)
ROWS, COLS = 32, 128  # squares sampled: at most ROWS x COLS
# Below 64x64 pixels a JPEG of a photo saves under 15 KB against LZ4 and its ~600 bytes of
# tables are half of it; a gradient's JPEG is larger than its LZ4 up to about 48x48. Either
# side under 16 pixels is less than one 4:2:0 block row or column (benchmarks/codecs.py).
MIN_PIXELS = 64 * 64
MIN_SIDE = 16

_GOLDEN = 0.6180339887  # the row-to-row shift of the sampled columns, as a fraction of their spacing
_SHIFTS = np.array([0, 8, 16], np.uint32)[:, None, None, None]


@lru_cache(maxsize=64)
def _grid(h: int, w: int, row: int) -> np.ndarray:
    """Word offsets of the sampled squares' four pixels (4 x n x m), for images h x w with `row` words a row.

    Drawables of one size repeat (a window, a tile), so the grid is made once per size
    (at most 64 KiB each: int32 offsets, enough for any surface SPICE has)."""
    n, m = min(ROWS, h - 1), min(COLS, w - 1)
    ys = np.linspace(0, h - 2, n).round().astype(np.intp)[:, None]
    spacing = (w - 1) / m
    shift = (np.arange(n) * (_GOLDEN * spacing))[:, None]
    xs = ((np.arange(m) * spacing)[None, :] + shift).astype(np.intp) % (w - 1)
    grid = (ys * row + xs + np.array([0, 1, row, row + 1], np.intp)[:, None, None]).astype(np.int32)
    grid.flags.writeable = False
    return grid


def _flat_words(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """The pixels as one flat run of u32 words (a view, for any row stride) and the row length in words."""
    if pixels.strides[1:] != (4, 1) or pixels.strides[0] % 4 or pixels.strides[0] < 0:
        pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    row = pixels.strides[0] // 4
    words = as_strided(pixels.view(np.uint32), shape=((h - 1) * row + w,), strides=(4,), writeable=False)
    return words, row


def graduality(pixels: np.ndarray) -> float:
    """Mean score per neighbour pair of the sampled squares (see the module's docstring).

    `pixels`: H x W x 4 uint8 B,G,R,X; the X byte is ignored. 1.0 for an image with a
    side under 2 pixels (no squares), as upstream.
    """
    h, w = pixels.shape[:2]
    if h < 2 or w < 2:
        return 1.0
    flat, row = _flat_words(pixels)
    quad = flat.take(_grid(h, w, row))  # each square's corner, right, lower, lower-right pixel as u32
    channels = ((quad[None] >> _SHIFTS) & 0xFF).astype(np.int16)  # B, G, R planes
    d = np.abs(channels[:, 1:] - channels[:, :1])
    diff = np.maximum(np.maximum(d[0], d[1]), d[2])  # the largest channel difference of each pair
    equal = diff == 0
    pairs = diff.size
    one_colour = int(np.count_nonzero(equal[0] & equal[1] & equal[2]))  # these squares score 0
    n_contrast = int(np.count_nonzero(diff >= CONTRAST))
    n_equal = int(np.count_nonzero(equal)) - 3 * one_colour
    n_small = pairs - 3 * one_colour - n_contrast - n_equal
    return (n_contrast + 0.5 * n_equal - 0.25 * n_small) / pairs


def lossy_pays(pixels: np.ndarray) -> bool:
    """Whether this image should go to a lossy client as JPEG rather than lossless."""
    h, w = pixels.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE or h * w < MIN_PIXELS:
        return False
    return graduality(pixels) < PHOTO_SCORE


def solid_colour(pixels: np.ndarray) -> int | None:
    """The one 32-bit pixel value (B,G,R,X in memory; 0xXXRRGGBB as a number) of an image
    whose pixels are all equal, else None. A drawable like that goes as DRAW_FILL. Four
    corner pixels reject almost every other image before the one vectorised full pass."""
    h, w = pixels.shape[:2]
    if h == 0 or w == 0:
        return None
    words = pixels.view(np.uint32)[..., 0] if pixels.flags.c_contiguous else np.ascontiguousarray(pixels).view(np.uint32)[..., 0]
    first = words[0, 0]
    if words[0, w - 1] != first or words[h - 1, 0] != first or words[h - 1, w - 1] != first or words[h // 2, w // 2] != first:
        return None
    if not (words == first).all():
        return None
    return int(first)
