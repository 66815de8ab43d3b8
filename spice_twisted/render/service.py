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
    drawables: int = 0
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
        self._snapshot: Drawable | None = None

    @property
    def width(self) -> int:
        return self.primary.width

    @property
    def height(self) -> int:
        return self.primary.height

    def commit(self, rects: list[Rect]) -> None:
        """Turn each changed rect into one drawable and hand the same object to every pipe."""
        self._snapshot = None
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
        return Drawable(self.primary.id, r, self.primary.crop(r), self.counters, self.encoder)

    def snapshot(self) -> Drawable:
        """The whole surface as it is now; shared by every pipe that asks before the next commit
        (late joiners, and lagging pipes that collapse their backlog)."""
        if self._snapshot is None:
            self.counters.snapshots += 1
            self._snapshot = self._drawable(self.primary.rect)
        return self._snapshot

    def subscribe(self, sink: DrawableSink) -> Drawable:
        """Add a pipe; returns the full current surface as its first drawable (same reactor turn)."""
        self.sinks.append(sink)
        return self.snapshot()

    def unsubscribe(self, sink: DrawableSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
