"""The render service: the one owner of a display's surface, turning damage into drawables.

One frame's way: sources change `primary.pixels` and call `damage()`; at most
`max_fps` times a second `_frame()` runs the sources' paint hooks, simplifies the
damage into a few rects, copies each rect's pixels once into a `Drawable`, submits
its encodes (one per codec some subscribed pipe uses) in commit order, and pushes
the same object into every pipe. Pipes never make the producer wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..turns import SendTurns
from .copy_bits import CopyBits
from .counters import RenderCounters
from .drawable import Drawable
from .frames import DEFAULT_MAX_FPS, FramePacer
from .glz_group import GlzGroups
from .lossy_upgrade import LossyUpgrade
from .payloads import PayloadService
from .rect import Rect
from .region import Region
from .streams import Streams
from .surface import Surface, SurfaceBound, SurfaceTooLarge

# A frame's damage becomes at most this many drawables (merged where merging wastes little).
MAX_RECTS = 16


class DrawableSink(Protocol):
    """A display pipe as the render service sees it."""

    codec: str  # its lossless codec
    accepting: bool  # False while it only gathers damage for a later refresh (it fell behind)
    lossy: Region  # the areas its client holds lossy
    idle: bool  # nothing left to send
    upgraded_at: float  # when the render service last pushed it a lossless upgrade

    def codecs_now(self) -> tuple[str, str]: ...  # (for a picture, for a photo-like one), read once a frame
    def request_payload(self, drawable: Drawable, codec: str) -> bool: ...
    def lossless_codec_for(self, drawable: Drawable) -> str: ...
    def push_drawable(self, drawable: Drawable, codec: str | None = None) -> None: ...
    def push_lossless(self, drawable: Drawable) -> None: ...
    def absorb(self, rect: Rect) -> None: ...
    def push_copy(self, op: CopyBits) -> None: ...
    def surface_changed(self, surface: Surface) -> None: ...


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
        self.upgrades = LossyUpgrade(self, reactor)  # lossy areas sent again lossless once quiet
        self.max_surface: SurfaceBound | None = None
        self.pacer = FramePacer(reactor, max_fps, self._frame)
        # The pipes' marshal-and-write, after the frame, a bounded visit per client per turn.
        self.sends = SendTurns(reactor)
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
        self.sends.stop()
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
        """Run the pending frame now instead of at its time, and the send turns it woke."""
        self.pacer.run_now()
        self.sends.run_now()

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
        # Per client the frame does only what it must: read its state once, enqueue each
        # drawable; its marshal and write come in its send turn (spice_twisted/turns.py).
        taking: list[DrawableSink] = []
        behind: list[DrawableSink] = []
        for s in self.sinks:
            (taking if s.accepting else behind).append(s)
        choices = {s: s.codecs_now() for s in taking}
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
            d.hold()  # the frame's own reference, while it is handed out
            glz = self.glz.assign(d, taking)  # the GLZ members that get it from their dictionary
            if d.solid_colour() is not None:
                self.counters.fills += 1  # a DRAW_FILL: nothing to encode
            else:
                photo = d.photo_like()
                requested: set[str] = set()  # one encode per codec: whoever asks first
                for sink in taking:
                    if sink not in glz:
                        codec = choices[sink][photo]
                        if codec not in requested and sink.request_payload(d, codec):
                            requested.add(codec)
            for sink in taking:
                sink.push_drawable(d, glz.get(sink))
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

    # --- lossy areas made exact (render/lossy_upgrade.py) -------------------------------
    @property
    def lossless_after(self) -> float:
        return self.upgrades.lossless_after

    def set_lossless_after(self, seconds: float) -> None:
        """How long an area must stay quiet before lossy clients get it lossless."""
        self.upgrades.set_lossless_after(seconds)

    def lossy_sent(self) -> None:
        """A pipe wrote something lossy (its client may have joined a still display)."""
        self.upgrades.schedule()

    def _mark_drawn(self, rects: list[Rect]) -> None:
        self.upgrades.mark_drawn(rects)

    def _schedule_upgrade(self) -> None:
        self.upgrades.schedule()

    def pending(self) -> Region | None:
        """The damage the coming frame will draw; None while a resize is pending (the frame
        starts every pipe over)."""
        if self._surface_changed:
            return None
        return Region.from_damage(self._damage) if self._damage else Region()

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
        self.upgrades.reset()
        self.pacer.request()

    def subscribe(self, sink: DrawableSink) -> None:
        self.sinks.append(sink)
        self.streams.joined(sink)

    def unsubscribe(self, sink: DrawableSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
