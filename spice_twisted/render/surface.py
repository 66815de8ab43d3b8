"""A drawing surface: pixels in a numpy array, in SPICE 32-bit xRGB memory order (B, G, R, X)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..wire.enums import SurfaceFormat
from .rect import Rect

MAX_SIDE = 16384  # what a SPICE client (spice-gtk, spice-html5) takes a side to be at most


@dataclass(frozen=True)
class SurfaceBound:
    """The largest primary surface served (--max-surface): a surface costs 4 bytes a pixel
    here and in every client, so a source (a hostile VM, a huge image) must not choose it.
    `pixels` bounds the area, `side` each side."""

    pixels: int
    side: int
    text: str  # as the user wrote it (or the default), for messages

    def __str__(self) -> str:
        return self.text

    def allows(self, width: int, height: int) -> bool:
        return width * height <= self.pixels and width <= self.side and height <= self.side

    def refusal(self, what: str, width: int, height: int) -> str:
        """One sentence for the log, a NOTIFY or a usage error."""
        return f"{what} is {width}x{height}, over --max-surface {self.text} ({width * height * 4 / 2**20:.0f} MiB a copy)"


def parse_max_surface(spec: str) -> SurfaceBound:
    """`WxH` (that area; each side up to the larger of W and H, so a rotated screen fits)
    or a number of pixels; ValueError with a message meant for the user."""
    text = spec.strip().lower()
    try:
        if "x" in text:
            w, h = (int(v) for v in text.split("x"))
            if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
                raise ValueError
            bound = SurfaceBound(w * h, max(w, h), f"{w}x{h}")
        else:
            n = int(text)
            if not 0 < n <= MAX_SIDE * MAX_SIDE:
                raise ValueError
            bound = SurfaceBound(n, MAX_SIDE, f"{n} pixels")
    except ValueError:
        raise ValueError(f"{spec!r}: write WxH (each side 1-{MAX_SIDE}) or a number of pixels") from None
    if not bound.allows(*MIN_BOUND):
        raise ValueError(f"{spec!r} is smaller than {MIN_BOUND[0]}x{MIN_BOUND[1]}, the least a source may need")
    return bound


MIN_BOUND = (800, 600)  # the VM source's "waiting for the VM" screen
DEFAULT_MAX_SURFACE = parse_max_surface("8192x4320")  # 8K UHD; 135 MiB a copy


class SurfaceTooLarge(ValueError):
    """A resize past the bound: the caller keeps the surface it has."""


class Surface:
    def __init__(self, surface_id: int, width: int, height: int, fmt: SurfaceFormat = SurfaceFormat.FMT_32_xRGB) -> None:
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise ValueError(f"surface size {width}x{height} out of range")
        self.id, self.width, self.height, self.format = surface_id, width, height, fmt
        self.pixels = np.zeros((height, width, 4), dtype=np.uint8)

    @property
    def rect(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    def crop(self, r: Rect) -> np.ndarray:
        """A read-only copy of the pixels of r, backed by one `bytes` object: the one copy a
        drawable costs (on the reactor thread). The raw bitmap codec sends those very bytes,
        the other codecs read them from their threads."""
        data = self.pixels[r.top : r.bottom, r.left : r.right].tobytes()
        return np.frombuffer(data, dtype=np.uint8).reshape(r.height, r.width, 4)
