"""A move of pixels on a surface (a window dragged, text scrolled), shown to every pipe.

Clients replay it with COPY_BITS from what they already hold, so only the area the
move exposed crosses the wire as pixels. Its message body is the same for every
client and is marshalled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rect import Rect


@dataclass(eq=False, slots=True)
class CopyBits:
    surface_id: int
    generation: int
    src: Rect
    dest: Rect  # same size as src
    body: bytes | None = None  # the COPY_BITS body, built by the first pipe that sends it

    @property
    def offset(self) -> tuple[int, int]:
        return self.dest.left - self.src.left, self.dest.top - self.src.top
