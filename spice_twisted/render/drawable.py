"""A drawable: one update of a surface area, shared by every pipe that shows it.

It keeps the pixels copied at commit time while any pipe still holds it (a pipe may
need a codec nobody asked for yet: a client switched its preferred compression), and
one `Payload` per codec once that codec's one encode is done. When the last pipe has
sent or dropped it, the pixels and payloads go.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import xxhash

from ..codecs import Payload, classify
from .rect import Rect

if TYPE_CHECKING:
    from .codec_pool import CodecPool

_ids = itertools.count(1)


class Drawable:
    __slots__ = (
        "id",
        "surface_id",
        "generation",
        "rect",
        "pixels",
        "payloads",
        "failed",
        "refs",
        "dropped_by",
        "prefixes",
        "_waiters",
        "pool",
        "_key",
        "_photo",
    )

    def __init__(self, surface_id: int, generation: int, rect: Rect, pixels: np.ndarray, pool: CodecPool) -> None:
        self.id = next(_ids)
        self.surface_id = surface_id
        self.generation = generation  # which primary surface (a resize starts a new one)
        self.rect = rect
        self.pixels: np.ndarray | None = pixels
        self.payloads: dict[str, Payload] = {}
        self.failed: set[str] = set()  # codecs whose encode raised: pipes drop this drawable
        self.refs = 0  # pipes (and the snapshot cache) holding it
        self.dropped_by: set[int] = set()  # ids of the pipes that dropped it unsent (GLZ needs this)
        self.prefixes: dict[tuple[str, int, int], bytes] = {}  # marshalled per-client parts, by their values
        self._waiters: dict[str, list[Callable[[], None]]] = {}
        self.pool = pool
        self._key: int | None = None
        self._photo: bool | None = None

    def photo_like(self) -> bool:
        """Whether lossy pays for this picture (codecs.classify: 35-85 us, once)."""
        if self._photo is None:
            self._photo = self.pixels is not None and classify.lossy_pays(self.pixels)
        return self._photo

    def content_key(self) -> int:
        """A 64-bit hash of the pixels and size: the pixmap-cache id of this image, so the
        same picture drawn again (an icon, a slide) is found whoever drew it. xxh3 hashes
        about 29 GB/s here (a 1024x768 frame in 0.1 ms), so it runs on the reactor."""
        if self._key is None:
            assert self.pixels is not None, "hashed after every pipe let it go"
            r = self.rect
            self._key = xxhash.xxh3_64_intdigest(self.pixels, seed=(r.width << 32) | r.height)
        return self._key

    @property
    def area(self) -> int:
        return self.rect.area

    def nbytes(self, codec: str) -> int:
        """What this drawable costs a pipe that uses `codec`: its payload once encoded, else raw pixels."""
        p = self.payloads.get(codec)
        return p.nbytes if p is not None else self.rect.area * 4

    # --- pipes hold and release it ---------------------------------------------------
    def hold(self) -> None:
        self.refs += 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs <= 0:
            self.pixels = None
            self.payloads.clear()
            self.prefixes.clear()

    def dropped(self, pipe_id: int) -> None:
        self.dropped_by.add(pipe_id)
        self.release()

    # --- encoding, once per codec ----------------------------------------------------
    def request(self, codec: str) -> None:
        """Start this codec's encode unless it is done, running or impossible."""
        if codec in self.payloads or codec in self.failed or codec in self._waiters:
            return
        if self.pixels is None:
            self.failed.add(codec)  # nobody holds it any more: nothing to encode
            return
        self._waiters[codec] = []
        self.pool.submit(self, codec, self.pixels)

    def when_ready(self, codec: str, callback: Callable[[], None]) -> None:
        """Call back once the codec's payload (or its failure) is in; requests it if needed."""
        self.request(codec)
        waiters = self._waiters.get(codec)
        if waiters is None:
            callback()
        else:
            waiters.append(callback)

    def encoded(self, codec: str, payload: Payload | None) -> None:
        """The pool's answer (None: the encode failed)."""
        if payload is None:
            self.failed.add(codec)
        elif self.pixels is not None:  # still held by some pipe
            self.payloads[codec] = payload
        for cb in self._waiters.pop(codec, []):
            cb()
