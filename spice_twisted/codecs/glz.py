"""GLZ images (GLZ_RGB32, and ZLIB_GLZ_RGB: the same deflated once more for slow links).

GLZ is LZ whose back-references may also point into earlier images of a window the
client keeps (spice-gtk's GLZ decoder window). The server keeps the same images in a
`GlzEncoder` (a dictionary in C, `_native/lz.c`); one encode serves every client whose
window holds the images it references.

API (the policy -- which clients share an encoder, which ids each holds -- is the caller's):

    enc = GlzEncoder(window_pixels)       # one per dictionary generation
    payload = enc.encode(pixels, image_id, min_ref_id)
    wan = zlib_glz(payload)               # the ZLIB_GLZ_RGB form, or None where it saves nothing
    head = rebased_header(data, base)     # the 33-byte header for a client whose image 0 is `base`
    late = rebased(payload, base)         # a copy with that header (to deflate it for that client)

- `image_id` must grow from call to call (ids are the GLZ stream's u64 image ids, below
  2^39); the encoder adds the image to its window after the encode.
- `min_ref_id`: the encode references no image with an id below it (images at or above it
  that the window still holds may be referenced, and the image itself). Pass the lowest id
  every client that will receive this payload holds (a group: its newest member's first
  image); `min_ref_id = image_id` encodes with no reference to other images.
- Window: the encoder holds at most `window_pixels` pixels of recent images (at least the
  current one). Each payload's header carries win_head_dist = image_id - oldest id held;
  a client then frees every image below that id, and no later payload references one.
- What spice-gtk's window needs (src/decode-glz.c; seen with real clients, see below):
  * every image a later payload references must have been sent to it (it blocks its
    display channel waiting for a missing id);
  * the GLZ ids a client receives must run 0, 1, 2, ... from its connection on, with no
    gap: it frees images by slot (id modulo its array size) from its own counter, which
    starts at 0 at connect and is never reset during the session. Ids starting at 1000
    made spice-gtk free images it still needed and stop drawing (tried with the test
    harness's `glz_everyone 0 0 1000`); ids from 0 decode exactly. An id must never
    repeat within a client's session.
  * references are relative: a match carries the image distance (id - referenced id)
    and a pixel offset in that image; win_head_dist is relative too. Only the header's
    id is absolute. So one payload serves a client whose image 0 is the dictionary's
    image `base`, with its header rebased (`rebased_header`: id - base, win_head_dist
    at most that, since spice-gtk computes id - win_head_dist in 64 bits and a distance
    past the id would wrap and free slots for ever), provided it was sent every image
    from `base` on and the encode used `min_ref_id >= base`.
- `encode` must not run concurrently on one encoder (one ordered lane): a second
  concurrent call raises RuntimeError. Different encoders run in parallel (no GIL held).
- After each encode: `last_ref_pixels` (pixels copied from earlier images), and
  `last_oldest_ref` (the oldest id referenced, or None), `image_ids` (held, oldest first).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..wire.enums import ImageType
from ..wire.schema import External
from ._native import load
from .payload import Payload

_lz = load("_lz")

INLINE_PIXELS = 96 * 96  # as LZ (codecs/lz.py)
# spice-gtk's default GLZ window is 16 MiB of 32-bit pixels (its glz-window-size).
DEFAULT_WINDOW_PIXELS = 4 * 1024 * 1024
ZLIB_LEVEL = 1  # the fastest level already takes most of what deflate can add (benchmarks/codecs.py)


class GlzEncoder:
    """One GLZ dictionary: the recent images, and the encodes that reference them."""

    def __init__(self, window_pixels: int = DEFAULT_WINDOW_PIXELS) -> None:
        self._dict = _lz.GlzDictionary(window_pixels)

    def encode(self, pixels: np.ndarray, image_id: int, min_ref_id: int = 0) -> Payload:
        data = self._dict.encode(pixels, image_id, min_ref_id)
        return Payload("glz", ImageType.GLZ_RGB, {"data": External(data)}, 4 + len(data))

    @property
    def window_pixels(self) -> int:
        return self._dict.window_pixels

    @property
    def pixels(self) -> int:
        """Pixels held: at most window_pixels, or the last image alone if it is larger."""
        return self._dict.pixels

    @property
    def image_ids(self) -> list[int]:
        return self._dict.image_ids

    @property
    def last_id(self) -> int | None:
        return self._dict.last_id

    @property
    def busy(self) -> bool:
        return self._dict.busy

    @property
    def last_ref_pixels(self) -> int:
        return self._dict.last_ref_pixels

    @property
    def last_oldest_ref(self) -> int | None:
        return self._dict.last_oldest_ref


HEADER_BYTES = 33  # magic, version, type|top_down<<4, width, height, stride, id (u64), win_head_dist
_ID_AT = 21  # the u64 id, then the u32 win_head_dist: the header's last 12 bytes, big-endian
_ID_AND_DIST = struct.Struct(">QI")


def rebased_header(data: bytes, base: int) -> bytes:
    """The header of GLZ data `data` for a client whose image 0 is the dictionary's image
    `base`: id - base, and win_head_dist at most that (spice-gtk frees up to id -
    win_head_dist in 64-bit arithmetic: past its id it would wrap and free slots for ever).
    References are relative (image distances, pixel offsets), so the rest is unchanged."""
    image_id, dist = _ID_AND_DIST.unpack_from(data, _ID_AT)
    if image_id < base:
        raise ValueError(f"GLZ image {image_id} is older than the client's first, {base}")
    own = image_id - base
    return bytes(data[:_ID_AT]) + _ID_AND_DIST.pack(own, min(dist, own))


def rebased(payload: Payload, base: int) -> Payload:
    """`payload` (a GLZ one) as a client whose image 0 is the dictionary's image `base` gets
    it: a copy with its header rebased (`rebased_header`). For ZLIB-GLZ, which deflates the
    header too; plain GLZ sends the rebased header and the shared rest as two buffers."""
    if base == 0:
        return payload
    data = payload.fields["data"].buf
    out = rebased_header(data, base) + bytes(memoryview(data)[HEADER_BYTES:])
    return Payload("glz", ImageType.GLZ_RGB, {"data": External(out)}, 4 + len(out))


def zlib_glz(payload: Payload, level: int = ZLIB_LEVEL) -> Payload | None:
    """The ZLIB_GLZ_RGB form of a GLZ payload (u32 glz_data_size, u32 data_size, a zlib
    stream of the GLZ data), or None if deflating does not make it smaller. zlib releases
    the GIL while it compresses."""
    glz = payload.fields["data"].buf
    z = zlib.compress(glz, level)
    if len(z) >= len(glz):
        return None
    return Payload("zlib_glz", ImageType.ZLIB_GLZ_RGB, {"glz_data_size": len(glz), "data": External(z)}, 8 + len(z))


def unzlib_glz(data: bytes, glz_data_size: int) -> bytes:
    """The reverse, as a client does it (tests)."""
    out = zlib.decompress(data)
    if len(out) != glz_data_size:
        raise ValueError(f"ZLIB_GLZ inflated to {len(out)} bytes, header says {glz_data_size}")
    return out
