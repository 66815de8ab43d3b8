"""Rectangles as (left, top, right, bottom) tuples, right/bottom exclusive."""

from __future__ import annotations

from typing import NamedTuple


class Rect(NamedTuple):
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def empty(self) -> bool:
        return self.right <= self.left or self.bottom <= self.top

    def union(self, other: Rect) -> Rect:
        if self.empty():
            return other
        if other.empty():
            return self
        return Rect(min(self.left, other.left), min(self.top, other.top), max(self.right, other.right), max(self.bottom, other.bottom))

    def intersect(self, other: Rect) -> Rect:
        r = Rect(max(self.left, other.left), max(self.top, other.top), min(self.right, other.right), min(self.bottom, other.bottom))
        return r if not r.empty() else Rect(0, 0, 0, 0)

    def contains(self, other: Rect) -> bool:
        return self.left <= other.left and self.top <= other.top and self.right >= other.right and self.bottom >= other.bottom

    def translate(self, dx: int, dy: int) -> Rect:
        return Rect(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)

    def wire(self) -> dict[str, int]:
        """The SpiceRect field dict of the schema."""
        return {"top": self.top, "left": self.left, "bottom": self.bottom, "right": self.right}
