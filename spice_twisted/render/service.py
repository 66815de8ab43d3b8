"""The render service: the one owner of a display's surfaces, fanning drawables out to pipes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.logger import Logger

from .drawable import Drawable
from .encoder import Encoder
from .rect import Rect
from .surface import Surface


class DrawableSink(Protocol):
    def push_drawable(self, drawable: Drawable) -> None: ...


@dataclass
class RenderCounters:
    """Encode-once evidence: encodes per codec (sends and reuses are counted by the pipes)."""

    encodes: dict[str, int] = field(default_factory=dict)
    drawables: int = 0  # committed updates (snapshots are counted apart)
    sends: int = 0  # drawables written to any pipe, since start
    cache_hits: int = 0  # of those, sent from bytes another pipe's request had encoded
    coalesced: int = 0  # drawables dropped unsent from a pipe (covered or collapsed), since start
    snapshots: int = 0
    encode_errors: int = 0
    log = Logger()

    def encoded(self, codec: str) -> None:
        self.encodes[codec] = self.encodes.get(codec, 0) + 1

    def encode_failed(self, failure: Any) -> None:
        self.encode_errors += 1
        self.log.failure("encode failed", failure)


class RenderService:
    """Owns the primary surface; sources draw into it and `commit` the changed rects."""

    def __init__(self, width: int, height: int, encoder: Encoder) -> None:
        self.primary = Surface(0, width, height)
        self.encoder = encoder
        self.sinks: list[DrawableSink] = []
        self.counters = RenderCounters()
        self._snapshots: dict[Rect, Drawable] = {}

    @property
    def width(self) -> int:
        return self.primary.width

    @property
    def height(self) -> int:
        return self.primary.height

    def commit(self, rects: list[Rect]) -> None:
        """Turn each changed rect into one drawable and hand the same object to every pipe."""
        self._snapshots.clear()
        if not self.sinks:
            return  # nobody to tell; a client that joins later starts from a snapshot
        bounds = self.primary.rect
        for r in rects:
            r = r.intersect(bounds)
            if r.empty():
                continue
            d = self._drawable(r)
            self.counters.drawables += 1
            for sink in list(self.sinks):
                sink.push_drawable(d)

    def _drawable(self, r: Rect) -> Drawable:
        return Drawable(self.primary.id, r, self.primary.crop(r), self.counters, self.encoder)

    def snapshot(self, rect: Rect | None = None) -> Drawable:
        """An area (default: all) of the surface as it is now, shared by every pipe that asks
        for the same area before the next commit (late joiners, lagging pipes collapsing)."""
        rect = self.primary.rect if rect is None else rect.intersect(self.primary.rect)
        d = self._snapshots.get(rect)
        if d is None:
            self.counters.snapshots += 1
            d = self._snapshots[rect] = self._drawable(rect)
        return d

    def subscribe(self, sink: DrawableSink) -> Drawable:
        """Add a pipe; returns the full current surface as its first drawable (same reactor turn)."""
        self.sinks.append(sink)
        return self.snapshot()

    def unsubscribe(self, sink: DrawableSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
