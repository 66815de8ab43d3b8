"""The lossy-upgrade policy: what a client holds lossy (JPEG) becomes exact once the area
goes quiet.

The render service marks every area it draws (`mark_drawn`) on a grid of TILE cells; once
nothing drew on a cell for `lossless_after` seconds, each pipe that holds it lossy gets it
again in its lossless codec, from one snapshot per rect (so one encode per codec, however
many clients want it). Its own module so the policy can be read and tuned apart from the
frame path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .rect import Rect
from .region import Region

if TYPE_CHECKING:
    from .counters import RenderCounters
    from .drawable import Drawable
    from .surface import Surface

TILE = 32  # the lossy bookkeeping's cell: when each was last drawn
# An area a client holds lossy is sent again lossless once nothing drew on it for this long.
LOSSLESS_AFTER = 0.5
# A client with something still to send gets its upgrade too, at most once per this many
# LOSSLESS_AFTERs: a display busy elsewhere (or a slow link) may never leave it idle, and its
# quiet areas must still become exact. Older upgrades still queued are covered by the new one.
BUSY_UPGRADE_AFTERS = 2


class UpgradeSink(Protocol):
    """A display pipe as the policy sees it (render/service.py's `DrawableSink` is one)."""

    accepting: bool
    lossy: Region
    idle: bool
    upgraded_at: float

    def lossless_codec_for(self, drawable: Drawable) -> str: ...
    def push_lossless(self, drawable: Drawable) -> None: ...


class UpgradeHost(Protocol):
    """What the policy reads of the render service."""

    primary: Surface
    sinks: Sequence[UpgradeSink]
    max_rects: int
    counters: RenderCounters

    def snapshot(self, rect: Rect) -> Drawable: ...
    def pending(self) -> Region | None: ...


class LossyUpgrade:
    def __init__(self, render: UpgradeHost, reactor: Any) -> None:
        self.render = render
        self.reactor = reactor
        self.lossless_after = LOSSLESS_AFTER
        self._drawn_at = self._new_grid()  # when each TILE cell was last drawn (reactor time)
        self._upgrade_call: Any = None

    def reset(self) -> None:
        """A new surface: nothing on it was drawn yet."""
        self._drawn_at = self._new_grid()

    def _new_grid(self) -> np.ndarray:
        s = self.render.primary
        return np.full((-(-s.height // TILE), -(-s.width // TILE)), -np.inf)

    def mark_drawn(self, rects: list[Rect]) -> None:
        now = self.reactor.seconds()
        for r in rects:
            self._drawn_at[r.top // TILE : -(-r.bottom // TILE), r.left // TILE : -(-r.right // TILE)] = now

    def _quiet_region(self, now: float) -> Region:
        """The cells nothing drew on for `lossless_after` seconds."""
        rects = []
        for row, line in enumerate(now - self._drawn_at >= self.lossless_after):
            edges = np.flatnonzero(np.diff(np.concatenate(([False], line, [False])).astype(np.int8)))
            for start, stop in zip(edges[::2], edges[1::2], strict=True):
                rects.append(Rect(int(start) * TILE, row * TILE, int(stop) * TILE, (row + 1) * TILE).intersect(self.render.primary.rect))
        return Region.from_rects(rects)

    def set_lossless_after(self, seconds: float) -> None:
        """How long an area must stay quiet before lossy clients get it lossless."""
        self.lossless_after = seconds
        if self._upgrade_call is not None:
            self._upgrade_call.cancel()
            self._upgrade_call = None
        self.schedule()

    def schedule(self) -> None:
        """Look for quiet areas `lossless_after` from now, if any pipe holds something lossy.
        Called after each frame and when a pipe wrote something lossy: its client may have
        joined a still display, where no frame will ever schedule the upgrade."""
        if self._upgrade_call is None and any(s.lossy for s in self.render.sinks):
            self._upgrade_call = self.reactor.callLater(self.lossless_after, self._upgrade_lossy)

    def _upgrade_lossy(self) -> None:
        """Send lossless what clients hold lossy where the display went quiet: one snapshot
        (so one encode per codec) for every client that holds the area lossy."""
        self._upgrade_call = None
        pending = self.render.pending()
        if pending is None:
            self.schedule()  # the coming frame starts every pipe over; look again after it
            return
        now = self.reactor.seconds()
        quiet = self._quiet_region(now)
        if pending:  # drawn again by the coming frame: not quiet. The rest need not wait
            quiet = quiet.subtract(pending)  # (a busy source)
        wants = {}
        busy_ok = now - BUSY_UPGRADE_AFTERS * self.lossless_after
        for sink in self.render.sinks:
            if sink.lossy and sink.accepting and (sink.idle or sink.upgraded_at <= busy_ok):
                want = sink.lossy.intersect(quiet)
                if want:
                    wants[sink] = want
        union = Region()
        for want in wants.values():
            union.add(want)
        for r in union.simplify(self.render.max_rects) if union else []:
            d = self.render.snapshot(r)
            self.render.counters.upgrades += 1
            for sink, want in wants.items():
                if want.intersects(r):
                    if d.solid_colour() is None:
                        d.request(sink.lossless_codec_for(d))
                    sink.push_lossless(d)
                    sink.upgraded_at = now
        self.schedule()  # areas still drawn on, or clients still busy: later
