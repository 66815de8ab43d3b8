"""The render service: the one owner of a display's surfaces, fanning drawables out to pipes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .drawable import Drawable
from .rect import Rect
from .surface import Surface


class DrawableSink(Protocol):
    def push_drawable(self, drawable: Drawable) -> None: ...


@dataclass
class RenderCounters:
    """Encode-once evidence: how often an image was encoded vs. served from a drawable's cache."""

    encodes: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    drawables: int = 0

    def encoded(self, codec: str) -> None:
        self.encodes[codec] = self.encodes.get(codec, 0) + 1

    def cache_hit(self) -> None:
        self.cache_hits += 1


class RenderService:
    """Owns the primary surface; sources draw into it and `commit` the changed rects."""

    def __init__(self, width: int, height: int) -> None:
        self.primary = Surface(0, width, height)
        self.sinks: list[DrawableSink] = []
        self.counters = RenderCounters()

    @property
    def width(self) -> int:
        return self.primary.width

    @property
    def height(self) -> int:
        return self.primary.height

    def commit(self, rects: list[Rect]) -> None:
        """Turn each changed rect into one drawable and hand it to every pipe."""
        bounds = self.primary.rect
        for r in rects:
            r = r.intersect(bounds)
            if r.empty():
                continue
            d = self._drawable(r)
            for sink in list(self.sinks):
                sink.push_drawable(d)

    def _drawable(self, r: Rect) -> Drawable:
        self.counters.drawables += 1
        return Drawable(self.primary.id, r, self.primary.crop(r), self.counters)

    def subscribe(self, sink: DrawableSink) -> Drawable:
        """Add a pipe; returns the full current surface as its first drawable (same reactor turn)."""
        self.sinks.append(sink)
        return self._drawable(self.primary.rect)

    def unsubscribe(self, sink: DrawableSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
