"""What the render service did, counted: its own module so the payload service and the
codec pool (below the render service) can be handed the counters without importing it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RenderCounters:
    """What the producer did; what each pipe did with it is counted by the pipes."""

    encodes: dict[str, int] = field(default_factory=dict)
    drawables: int = 0  # committed by frames (snapshots are counted apart)
    frames: int = 0
    snapshots: int = 0
    sends: int = 0  # drawables written to any pipe
    coalesced: int = 0  # drawables dropped unsent from a pipe (covered or collapsed)
    encode_errors: int = 0
    resizes: int = 0
    copies: int = 0  # COPY_BITS moves committed
    upgrades: int = 0  # lossless drawables made for areas clients held lossy
    fills: int = 0  # of the drawables, those of one colour: DRAW_FILL, nothing to encode

    def encoded(self, codec: str) -> None:
        self.encodes[codec] = self.encodes.get(codec, 0) + 1
