"""A drawable: one update of a surface area, shared by every pipe that shows it.

It keeps the pixels copied at commit time while any pipe still holds it (a pipe may
need a codec nobody asked for yet: a client switched its preferred compression).
Its encoded payloads, the waiters for them, the per-client prefixes and which pipes
dropped it live in the `PayloadService` (render/payloads.py); the methods here only
name the drawable for it. When the last pipe has sent or dropped it, the pixels go
and the service forgets it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol

import numpy as np
import xxhash

from ..codecs import Payload, classify
from .rect import Rect

_ids = itertools.count(1)


class PayloadKeeper(Protocol):
    """What a drawable asks of the payload service (render/payloads.py's `PayloadService`),
    declared here so the service may name `Drawable` without the two importing each other."""

    def payload(self, d: Drawable, codec: str) -> Payload | None: ...
    def nbytes(self, d: Drawable, codec: str) -> int: ...
    def request(self, d: Drawable, codec: str) -> None: ...
    def when_ready(self, d: Drawable, codec: str, callback: Callable[[], None]) -> None: ...
    def dropped(self, d: Drawable, pipe_id: int) -> None: ...
    def dropped_by(self, d: Drawable) -> frozenset[int]: ...
    def forget(self, d: Drawable) -> None: ...


class Drawable:
    __slots__ = ("id", "surface_id", "generation", "rect", "pixels", "refs", "service", "_key", "_photo", "_solid")

    def __init__(self, surface_id: int, generation: int, rect: Rect, pixels: np.ndarray, service: PayloadKeeper) -> None:
        self.id = next(_ids)
        self.surface_id = surface_id
        self.generation = generation  # which primary surface (a resize starts a new one)
        self.rect = rect
        self.pixels: np.ndarray | None = pixels
        self.refs = 0  # pipes (and the snapshot cache) holding it
        self.service = service
        self._key: int | None = None
        self._photo: bool | None = None
        self._solid: int | None | bool = False  # False: not looked at yet

    def photo_like(self) -> bool:
        """Whether lossy pays for this picture (codecs.classify: 35-85 us, once)."""
        if self._photo is None:
            self._photo = self.pixels is not None and classify.lossy_pays(self.pixels)
        return self._photo

    def solid_colour(self) -> int | None:
        """The one 32-bit pixel value every pixel has, or None (looked at once): such a
        drawable goes as DRAW_FILL, no image at all."""
        if self._solid is False:
            self._solid = classify.solid_colour(self.pixels) if self.pixels is not None else None
        return self._solid  # type: ignore[return-value]

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

    # --- what the payload service keeps for it -------------------------------------------
    def payload(self, codec: str) -> Payload | None:
        return self.service.payload(self, codec)

    def nbytes(self, codec: str) -> int:
        """What this drawable costs a pipe that uses `codec`: its payload once encoded, else raw pixels."""
        return self.service.nbytes(self, codec)

    def request(self, codec: str) -> None:
        """Start this codec's encode unless it is done, running or impossible."""
        self.service.request(self, codec)

    def when_ready(self, codec: str, callback: Callable[[], None]) -> None:
        self.service.when_ready(self, codec, callback)

    @property
    def dropped_by(self) -> frozenset[int]:
        """The ids of the pipes that dropped it unsent (a shared GLZ dictionary reads this)."""
        return self.service.dropped_by(self)

    # --- pipes hold and release it ---------------------------------------------------
    def hold(self) -> None:
        self.refs += 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs <= 0:
            self.pixels = None
            self.service.forget(self)

    def passed_over(self, pipe_id: int) -> None:
        """A pipe that never held it will not show it (it was behind: a refresh shows the area)."""
        self.service.dropped(self, pipe_id)

    def dropped(self, pipe_id: int) -> None:
        self.service.dropped(self, pipe_id)
        self.release()
