"""Pipes: a channel client's queue of items still to send, bounded, coalescing in O(1).

A `Pipe` is a plain FIFO of items with their byte cost. A `DisplayPipe` holds shared
drawables and keeps itself small at the client's pace:
- a pushed drawable drops the unsent ones it covers among the last COVER_WINDOW
  items (a constant window: O(1) per push), up to the last COPY_BITS it does not
  cover (a move reads what came before it);
- past `max_items` or `max_bytes` its unsent drawables collapse into one `RefreshItem`,
  the *region* they cover (not its bounding box), which holds no pixels; until the pipe
  reaches it, newer drawables are absorbed into its region. When the pipe reaches it,
  it becomes snapshots of the surface as it is then (shared with other pipes). A move
  (COPY_BITS) that meets a refresh becomes its destination area in that refresh.
Every drawable a pipe drops learns that pipe's id (a shared GLZ dictionary must know).
A GLZ image of the pipe's generation (`DrawItem.pinned`) is never dropped: the pipe's
client leaves its generation before the pipe collapses (render/glz_group.py).
Nothing here knows of sockets or Twisted.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator

from ..render.copy_bits import CopyBits
from ..render.drawable import Drawable
from ..render.glz_group import PREFIX as GLZ_PREFIX
from ..render.rect import Rect
from ..render.region import Region

COVER_WINDOW = 16
# A refresh region past this many rects is coarsened (to MAX_REFRESH_RECTS boxes): an
# absorbed flood must not make it, or the work to send it, grow without bound.
COARSEN_RECTS = 256
MAX_REFRESH_RECTS = 16
DEFAULT_MAX_ITEMS = 64
DEFAULT_MAX_BYTES = 16 << 20

_pipe_ids = itertools.count(1)


class PipeItem:
    """A message whose body is ready now (control messages: a few bytes)."""

    __slots__ = ("msg_type", "data", "nbytes", "live")

    def __init__(self, msg_type: int, data: bytes) -> None:
        self.msg_type, self.data = msg_type, data
        self.nbytes = len(data)
        self.live = True  # False once dropped: the pipe skips it (lazy removal)


class DrawItem(PipeItem):
    """A pipe's reference to a shared drawable, marshalled per client when it is sent.

    `codec` forces a codec (a lossless upgrade of an area the client holds lossy);
    `lossy` and `inval` record, at marshal time, what its sending does to the client."""

    __slots__ = ("drawable", "codec", "lossy", "inval")

    @property
    def pinned(self) -> bool:
        """An image of a GLZ generation this pipe's client is a member of: it must reach the
        client, so the pipe never drops it (the client leaves the generation first)."""
        return self.codec is not None and self.codec.startswith(GLZ_PREFIX)

    def __init__(self, msg_type: int, drawable: Drawable, nbytes: int, codec: str | None = None) -> None:
        self.msg_type, self.data, self.nbytes, self.live = msg_type, b"", nbytes, True
        self.drawable = drawable
        self.codec = codec
        self.lossy = False
        self.inval: list[int] = []


class CopyItem(PipeItem):
    """A pipe's reference to a shared move of pixels (COPY_BITS)."""

    __slots__ = ("op",)

    def __init__(self, msg_type: int, op: CopyBits) -> None:
        self.msg_type, self.data, self.nbytes, self.live = msg_type, b"", 40, True
        self.op = op


class RefreshItem(PipeItem):
    """The surface over `region`, taken only when the pipe reaches it."""

    __slots__ = ("region", "_adds")

    def __init__(self, msg_type: int, region: Region) -> None:
        self.msg_type, self.data, self.nbytes, self.live = msg_type, b"", 0, True
        self.region = region
        self._adds = 0

    def add(self, area: Rect | Region) -> None:
        if isinstance(area, Rect) and self.region.contains_rect(area):
            return  # already shown by it (a pipe behind a full-screen repaint: every frame)
        self.region.add(area)
        self._adds += 1
        # Counting the region's rects walks its bands: do it every 32 adds, not every add.
        if self._adds % 32 == 0 and len(self.region) > COARSEN_RECTS:
            self.region = Region.from_rects(self.region.simplify(MAX_REFRESH_RECTS))


class Pipe:
    """FIFO of items; dropped items stay as tombstones until they reach the head."""

    def __init__(self) -> None:
        self.items: deque[PipeItem] = deque()
        self.live = 0
        self.bytes = 0

    def __len__(self) -> int:
        return self.live

    def __bool__(self) -> bool:
        return self.live > 0

    def __iter__(self) -> Iterator[PipeItem]:
        return (it for it in self.items if it.live)

    def append(self, item: PipeItem) -> None:
        self.items.append(item)
        self._count(item, 1)

    def appendleft(self, item: PipeItem) -> None:
        self.items.appendleft(item)
        self._count(item, 1)

    def head(self) -> PipeItem | None:
        items = self.items
        while items and not items[0].live:
            items.popleft()
        return items[0] if items else None

    def popleft(self) -> PipeItem:
        item = self.head()
        assert item is not None
        self.items.popleft()
        self._count(item, -1)
        item.live = False
        return item

    def discard(self, item: PipeItem) -> None:
        """Drop an item wherever it is (O(1): it becomes a tombstone)."""
        if item.live:
            item.live = False
            self._count(item, -1)
            if len(self.items) > 4 * max(self.live, 16):  # tombstones never outgrow the live items
                self.items = deque(it for it in self.items if it.live)

    def clear(self) -> list[PipeItem]:
        live = [it for it in self.items if it.live]
        for it in live:
            it.live = False
        self.items.clear()
        self.live = self.bytes = 0
        return live

    def _count(self, item: PipeItem, sign: int) -> None:
        self.live += sign
        self.bytes += sign * item.nbytes


class DisplayPipe(Pipe):
    def __init__(
        self,
        draw_type: int,
        codec: Callable[[], str],
        max_items: int = DEFAULT_MAX_ITEMS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        copy_type: int = 0,
    ) -> None:
        super().__init__()
        self.id = next(_pipe_ids)
        self.draw_type, self.copy_type = draw_type, copy_type
        self.codec = codec
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.refresh: RefreshItem | None = None  # the unsent refresh, while it absorbs pushes
        self.waiting_on: DrawItem | None = None  # the head, whose encode the pipe waits for
        self.coalesced = 0
        self.collapses = 0
        self.before_collapse: Callable[[], None] | None = None  # a GLZ member leaves its generation first
        self.peak_items = 0
        self.peak_bytes = 0

    @property
    def accepting(self) -> bool:
        """False while an unsent refresh absorbs every update (the producer then sends only
        the area: see `absorb`)."""
        return self.refresh is None

    def absorb(self, rect: Rect) -> None:
        """An update this pipe will show through its pending refresh."""
        assert self.refresh is not None
        self.refresh.add(rect)
        self.coalesced += 1

    def push(self, drawable: Drawable, codec: str | None = None) -> None:
        """Queue a drawable (the pipe holds it until sent or dropped); `codec` forces one."""
        if self.refresh is not None:
            self.absorb(drawable.rect)
            drawable.passed_over(self.id)
            return
        self._drop_covered(drawable)
        drawable.hold()
        self._append_bounded(DrawItem(self.draw_type, drawable, drawable.nbytes(codec or self.codec()), codec))

    def push_copy(self, op: CopyBits) -> None:
        """Queue a move of pixels; behind a refresh, the refresh takes its destination."""
        if self.refresh is not None:
            self.absorb(op.dest)
            return
        self._append_bounded(CopyItem(self.copy_type, op))

    def _append_bounded(self, item: PipeItem) -> None:
        self.append(item)
        if self.live > self.max_items or self.bytes > self.max_bytes:
            self.collapse()
        self.peak_items = max(self.peak_items, self.live)
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _drop_covered(self, drawable: Drawable) -> None:
        seen = 0
        for it in reversed(self.items):
            if not it.live:
                continue
            seen += 1
            if seen > COVER_WINDOW:
                break
            if isinstance(it, DrawItem):
                d = it.drawable
                if d.surface_id == drawable.surface_id and drawable.rect.contains(d.rect) and not it.pinned:
                    self._drop(it)
            elif isinstance(it, CopyItem):
                if it.op.surface_id != drawable.surface_id or not drawable.rect.contains(it.op.dest):
                    break  # the move reads what came before it: nothing older may go
                self.discard(it)  # everything it wrote is drawn over
                self.coalesced += 1

    def _drop(self, item: DrawItem) -> None:
        self.discard(item)
        item.drawable.dropped(self.id)
        self.coalesced += 1

    def add_refresh(self, region: Region) -> None:
        """Queue the surface over `region`, taken when the pipe reaches it."""
        if self.refresh is not None:
            self.refresh.add(region)
            return
        self.refresh = RefreshItem(self.draw_type, region)
        self.append(self.refresh)

    def collapse(self) -> None:
        """Past a bound: every unsent drawable becomes one refresh of the region they cover,
        put where the first of them stood (control messages keep their order)."""
        if self.before_collapse is not None:
            self.before_collapse()
        kept: deque[PipeItem] = deque()
        refresh = RefreshItem(self.draw_type, Region())
        placed = False
        for it in self.items:
            if not it.live:
                continue
            if it is self.waiting_on:
                kept.append(it)  # its encode is under way: dropping it would only waste that
                continue
            if isinstance(it, DrawItem):
                refresh.add(it.drawable.rect)
                it.live = False
                it.drawable.dropped(self.id)
                self.coalesced += 1
            elif isinstance(it, RefreshItem):
                refresh.add(it.region)
                it.live = False
            elif isinstance(it, CopyItem):
                refresh.add(it.op.dest)  # the refresh shows where the move wrote, as it is then
                it.live = False
            else:
                kept.append(it)
                continue
            if not placed:
                kept.append(refresh)
                placed = True
        self.items = kept
        self.live = len(kept)
        self.bytes = sum(it.nbytes for it in kept)
        self.refresh = refresh
        self.collapses += 1

    def expand_head(self, snapshot: Callable[[Rect], Drawable], max_rects: int) -> None:
        """The head is a refresh: replace it by snapshots of its region as it is now."""
        item = self.head()
        assert isinstance(item, RefreshItem)
        self.popleft()
        if item is self.refresh:
            self.refresh = None  # newer drawables now queue behind its snapshots
        for r in reversed(item.region.simplify(max_rects)):
            d = snapshot(r)
            d.hold()
            self.appendleft(DrawItem(self.draw_type, d, d.nbytes(self.codec())))

    def sent(self, item: DrawItem) -> None:
        item.drawable.release()

    def reset(self) -> None:
        """Forget every drawable (a new surface replaces them all)."""
        for it in self.clear():
            if isinstance(it, DrawItem):
                it.drawable.dropped(self.id)
            elif not isinstance(it, (RefreshItem, CopyItem)):
                it.live = True
                self.append(it)  # control messages still go
        self.refresh = None
        self.waiting_on = None
