"""The render service: the one owner of a display's surface, turning damage into drawables.

One frame's way: sources change `primary.pixels` and call `damage()`; at most
`max_fps` times a second `_frame()` runs the sources' paint hooks, simplifies the
damage into a few rects, copies each rect's pixels once into a `Drawable`, submits
its encodes (one per codec some subscribed pipe uses) in commit order, and pushes
the same object into every pipe. Pipes never make the producer wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .copy_bits import CopyBits
from .drawable import Drawable
from .frames import DEFAULT_MAX_FPS, FramePacer
from .glz_group import GlzGroups
from .payloads import PayloadService
from .rect import Rect
from .region import Region
from .streams import Streams
from .surface import Surface, SurfaceBound, SurfaceTooLarge

# A frame's damage becomes at most this many drawables (merged where merging wastes little).
MAX_RECTS = 16
TILE = 32  # the lossy bookkeeping's cell: when each was last drawn
# An area a client holds lossy is sent again lossless once nothing drew on it for this long.
LOSSLESS_AFTER = 0.5
# A client with something still to send gets its upgrade too, at most once per this many
# LOSSLESS_AFTERs: a display busy elsewhere (or a slow link) may never leave it idle, and its
# quiet areas must still become exact. Older upgrades still queued are covered by the new one.
BUSY_UPGRADE_AFTERS = 2


class DrawableSink(Protocol):
    """A display pipe as the render service sees it."""

    codec: str  # its lossless codec
    accepting: bool  # False while it only gathers damage for a later refresh (it fell behind)
    lossy: Region  # the areas its client holds lossy
    idle: bool  # nothing left to send
    upgraded_at: float  # when the render service last pushed it a lossless upgrade

    def request_payload(self, drawable: Drawable) -> None: ...
    def lossless_codec_for(self, drawable: Drawable) -> str: ...
    def push_drawable(self, drawable: Drawable, codec: str | None = None) -> None: ...
    def push_lossless(self, drawable: Drawable) -> None: ...
    def absorb(self, rect: Rect) -> None: ...
    def push_copy(self, op: CopyBits) -> None: ...
    def surface_changed(self, surface: Surface) -> None: ...


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


class RenderService:
    def __init__(
        self,
        width: int,
        height: int,
        reactor: Any,
        max_fps: float = DEFAULT_MAX_FPS,
        max_rects: int = MAX_RECTS,
    ) -> None:
        self.reactor = reactor
        self.counters = RenderCounters()
        self.payloads = PayloadService(reactor, self.counters)
        self.pool = self.payloads.pool  # the parallel lane (stats, benchmarks)
        self.glz = GlzGroups(self.payloads)  # the shared GLZ dictionaries
        self.primary = Surface(0, width, height)
        self.generation = 0
        self.max_rects = max_rects
        self.sinks: list[DrawableSink] = []
        self._damage: list[Rect] = []
        self._in_frame = False
        self._paint_hooks: list[Callable[[], None]] = []
        self._snapshots: dict[Rect, Drawable] = {}
        self._surface_changed = False  # a resize the pipes learn of at the next frame
        self._drawn_at = self._new_grid()  # when each TILE cell was last drawn (reactor time)
        self._upgrade_call: Any = None
        self.lossless_after = LOSSLESS_AFTER
        self.max_surface: SurfaceBound | None = None
        self.pacer = FramePacer(reactor, max_fps, self._frame)
        self.streams = Streams(self)  # video areas sent as streams (render/streams.py)

    @property
    def width(self) -> int:
        return self.primary.width

    @property
    def height(self) -> int:
        return self.primary.height

    def start(self) -> None:
        self.payloads.start()

    def stop(self) -> None:
        self.pacer.stop()
        self.streams.stop()
        self.payloads.stop()

    # --- the producer ------------------------------------------------------------------
    def damage(self, rect: Rect) -> None:
        """The pixels of `rect` changed (or will have, once the paint hooks ran)."""
        damage = self._damage
        if damage and damage[-1] == rect:
            return  # the same area again (a flood of events on one spot): nothing new
        r = rect.intersect(self.primary.rect)
        if r.empty():
            return
        damage.append(r)
        if not self._in_frame:
            self.pacer.request()

    def copy_bits(self, src: Rect, dest_x: int, dest_y: int) -> None:
        """Move the pixels of `src` (on the primary) so its top-left lands at (dest_x, dest_y):
        a window dragged, text scrolled. The render service moves them itself and every
        client gets a COPY_BITS instead of the moved pixels; the source then paints what the
        move exposed and marks that damaged as usual.

        Damage marked but not committed yet (its pixels may not even be painted: paint
        hooks run at the frame) stays pending; where it lay in `src`, it is marked again
        where the move took it. Clients replay the move on what they hold, then the
        frame sends the pending areas as they are then, so every client ends exact, and
        what any pipe holds plus the pending damage always equals the surface (a refresh
        taken at any moment stays right). A source moves at most once a frame (from its
        paint hook), so the cost is one pass over the pending rects."""
        dx, dy = dest_x - src.left, dest_y - src.top
        bounds = self.primary.rect
        src = src.translate(dx, dy).intersect(bounds).translate(-dx, -dy).intersect(bounds)
        if src.empty() or (dx == 0 and dy == 0):
            return
        dest = src.translate(dx, dy)
        if not self._surface_changed:
            moved = [r.intersect(src).translate(dx, dy) for r in self._damage if not r.intersect(src).empty()]
            self._damage.extend(moved)
            op = CopyBits(self.primary.id, self.generation, src, dest)
            self.counters.copies += 1
            for sink in list(self.sinks):
                if sink.accepting:
                    sink.push_copy(op)
                else:
                    sink.absorb(dest)
        px = self.primary.pixels
        px[dest.top : dest.bottom, dest.left : dest.right] = px[src.top : src.bottom, src.left : src.right].copy()
        self._clear_snapshots()
        self._mark_drawn([dest])

    def add_paint_hook(self, hook: Callable[[], None]) -> None:
        """`hook()` runs at the start of every frame: a source that keeps state (typed text)
        paints it once a frame instead of once an event."""
        self._paint_hooks.append(hook)

    def request_frame(self) -> None:
        """Run a frame soon even with no damage marked: a source whose paint hook has
        something to draw (a drag, a queued line) that no damage announced yet."""
        if not self._in_frame:
            self.pacer.request()

    def flush(self) -> None:
        """Run the pending frame now instead of at its time."""
        self.pacer.run_now()

    def _frame(self) -> None:
        self._in_frame = True
        try:
            for hook in self._paint_hooks:
                hook()
        finally:
            self._in_frame = False
        self.counters.frames += 1
        if self._surface_changed:
            # Every pipe starts over with the whole new surface, as the source has painted it.
            self._surface_changed = False
            self._damage = []
            self._clear_snapshots()
            for sink in list(self.sinks):
                sink.surface_changed(self.primary)
            return
        self._commit()

    def _commit(self) -> None:
        """The damage marked so far becomes drawables in every pipe."""
        region = Region.from_damage(self._damage)
        self._damage = []
        self._clear_snapshots()
        if not self.sinks or not region:
            return  # nobody to tell; a client that joins later starts from a refresh
        # A pipe that fell behind takes only the area (its refresh is taken later): no pixels
        # are copied or encoded for it, and none at all while every pipe is behind.
        behind = [s for s in self.sinks if not s.accepting]
        taking = [s for s in self.sinks if s.accepting]
        rects = region.simplify(self.max_rects)
        self._mark_drawn(rects)
        rects = self.streams.commit(rects, taking, behind, region)  # stream areas go as stream frames
        for r in rects:
            for sink in behind:
                sink.absorb(r)
            if not taking:
                continue
            d = Drawable(self.primary.id, self.generation, r, self.primary.crop(r), self.payloads)
            self.counters.drawables += 1
            if d.solid_colour() is not None:
                self.counters.fills += 1
            d.hold()  # the frame's own reference, while it is handed out
            glz = self.glz.assign(d, taking)  # the GLZ members that get it from their dictionary
            for sink in taking:
                if sink not in glz:
                    sink.request_payload(d)  # one encode per codec, whoever asks first
            for sink in taking:
                if sink in glz:
                    sink.push_drawable(d, glz[sink])
                else:
                    sink.push_drawable(d)
            d.release()
        self._schedule_upgrade()

    # --- what pipes take when they are ready --------------------------------------------
    def snapshot(self, rect: Rect) -> Drawable:
        """The surface over `rect` as it is now, shared by every pipe that asks for the same
        rect before the next frame (late joiners, collapsed pipes)."""
        rect = rect.intersect(self.primary.rect)
        d = self._snapshots.get(rect)
        if d is None or d.pixels is None:
            self.counters.snapshots += 1
            d = Drawable(self.primary.id, self.generation, rect, self.primary.crop(rect), self.payloads)
            d.hold()  # the cache's reference, until the next frame
            self._snapshots[rect] = d
        return d

    def _clear_snapshots(self) -> None:
        for d in self._snapshots.values():
            d.release()
        self._snapshots.clear()

    # --- lossy areas made exact ---------------------------------------------------------
    def _new_grid(self) -> np.ndarray:
        s = self.primary
        return np.full((-(-s.height // TILE), -(-s.width // TILE)), -np.inf)

    def _mark_drawn(self, rects: list[Rect]) -> None:
        now = self.reactor.seconds()
        for r in rects:
            self._drawn_at[r.top // TILE : -(-r.bottom // TILE), r.left // TILE : -(-r.right // TILE)] = now

    def _quiet_region(self, now: float) -> Region:
        """The cells nothing drew on for `lossless_after` seconds."""
        rects = []
        for row, line in enumerate(now - self._drawn_at >= self.lossless_after):
            edges = np.flatnonzero(np.diff(np.concatenate(([False], line, [False])).astype(np.int8)))
            for start, stop in zip(edges[::2], edges[1::2], strict=True):
                rects.append(Rect(int(start) * TILE, row * TILE, int(stop) * TILE, (row + 1) * TILE).intersect(self.primary.rect))
        return Region.from_rects(rects)

    def set_lossless_after(self, seconds: float) -> None:
        """How long an area must stay quiet before lossy clients get it lossless."""
        self.lossless_after = seconds
        if self._upgrade_call is not None:
            self._upgrade_call.cancel()
            self._upgrade_call = None
        self._schedule_upgrade()

    def lossy_sent(self) -> None:
        """A pipe wrote something lossy. Its client may have joined a still display, where
        no frame will ever schedule the upgrade: schedule it here."""
        self._schedule_upgrade()

    def _schedule_upgrade(self) -> None:
        if self._upgrade_call is None and any(s.lossy for s in self.sinks):
            self._upgrade_call = self.reactor.callLater(self.lossless_after, self._upgrade_lossy)

    def _upgrade_lossy(self) -> None:
        """Send lossless what clients hold lossy where the display went quiet: one snapshot
        (so one encode per codec) for every client that holds the area lossy."""
        self._upgrade_call = None
        if self._surface_changed:
            self._schedule_upgrade()  # the coming frame starts every pipe over; look again after it
            return
        now = self.reactor.seconds()
        quiet = self._quiet_region(now)
        if self._damage:  # drawn again by the coming frame: not quiet. The rest need not wait
            quiet = quiet.subtract(Region.from_damage(self._damage))  # (a busy source)
        wants = {}
        busy_ok = now - BUSY_UPGRADE_AFTERS * self.lossless_after
        for sink in self.sinks:
            if sink.lossy and sink.accepting and (sink.idle or sink.upgraded_at <= busy_ok):
                want = sink.lossy.intersect(quiet)
                if want:
                    wants[sink] = want
        union = Region()
        for want in wants.values():
            union.add(want)
        for r in union.simplify(self.max_rects) if union else []:
            d = self.snapshot(r)
            self.counters.upgrades += 1
            for sink, want in wants.items():
                if want.intersects(r):
                    if d.solid_colour() is None:
                        d.request(sink.lossless_codec_for(d))
                    sink.push_lossless(d)
                    sink.upgraded_at = now
        self._schedule_upgrade()  # areas still drawn on, or clients still busy: later

    # --- the surface's life ------------------------------------------------------------
    def resize(self, width: int, height: int) -> None:
        """A new primary surface (black) of the new size. The source draws into the new
        `primary`; at the next frame every pipe starts over on it, so the whole surface a
        client gets before its MARK is what the source painted, not the black of a new one.
        Past `max_surface` (set by the source from --max-surface) it raises SurfaceTooLarge
        and keeps the surface it has: sources check first, this is the backstop."""
        if self.max_surface is not None and not self.max_surface.allows(width, height):
            raise SurfaceTooLarge(self.max_surface.refusal("the new surface", width, height))
        self.streams.reset()
        self.generation += 1
        self.counters.resizes += 1
        self.primary = Surface(0, width, height)
        self._damage = []
        self._clear_snapshots()
        self._surface_changed = True
        self._drawn_at = self._new_grid()
        self.pacer.request()

    def subscribe(self, sink: DrawableSink) -> None:
        self.sinks.append(sink)
        self.streams.joined(sink)

    def unsubscribe(self, sink: DrawableSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
