"""The display channel: the primary surface, then its drawables as DRAW_COPY, at the client's pace.

The pipe coalesces: a drawable that covers older unsent ones replaces them, and a
backlog of more than one surface's worth of pixels collapses into one *refresh* of
the area it covers. A refresh holds no pixels: it takes them from the surface only
when the client is ready for it, and until then it absorbs every newer update. So a
slow or stalled client costs no copies and bounded memory, and never holds up others.
"""

from __future__ import annotations

from typing import Any

from ..render.drawable import DRAW_COPY, Drawable
from ..render.rect import Rect
from ..wire.enums import ChannelType, SurfaceFlags
from .base import ChannelClient, PipeItem

DISPLAY_INIT_TIMEOUT = 5.0


class DrawableItem(PipeItem):
    """A pipe's reference to a shared drawable; marshalled from its one encoding."""

    __slots__ = ("drawable", "counted")

    def __init__(self, drawable: Drawable) -> None:
        self.msg_type = DRAW_COPY.id
        self.drawable = drawable
        self.counted = False  # this pipe's encode-or-reuse is counted once per item

    @property
    def nbytes(self) -> int:
        return self.drawable.nbytes

    @property
    def dropped(self) -> bool:
        return self.drawable.failed

    def body(self, cc: ChannelClient) -> bytes | None:
        body, started = self.drawable.body(cc.encode_ready)
        if started:
            cc.encodes += 1
            self.counted = True
        elif body is not None and not self.counted:
            cc.cache_hits += 1
            cc.server.render.counters.cache_hits += 1
            self.counted = True
        return body


class RefreshItem(DrawableItem):
    """The current surface over `rect`, taken when the pipe reaches it (then shared, and
    encoded once, with any pipe refreshing the same rect before the next commit)."""

    __slots__ = ("rect",)

    def __init__(self, rect: Rect) -> None:
        self.msg_type = DRAW_COPY.id
        self.rect = rect
        self.drawable = None  # type: ignore[assignment]
        self.counted = False

    @property
    def nbytes(self) -> int:
        return 0 if self.drawable is None else self.drawable.nbytes

    @property
    def area(self) -> int:
        return self.rect.area

    @property
    def dropped(self) -> bool:
        return self.drawable is not None and self.drawable.failed

    def body(self, cc: ChannelClient) -> bytes | None:
        if self.drawable is None:
            assert isinstance(cc, DisplayChannelClient)
            self.drawable = cc.server.render.snapshot(self.rect)
            cc.refresh = None  # from now on newer updates queue behind it
        return super().body(cc)


class DisplayChannelClient(ChannelClient):
    channel_type = ChannelType.DISPLAY
    handles_acks = True

    def on_connected(self) -> None:
        self.streaming = False
        self.cache_params: dict[str, Any] | None = None
        self.pending_pixels = 0
        self.refresh: RefreshItem | None = None  # the unsent refresh at the pipe's end, if any
        # Upstream waits for DISPLAY_INIT; a client that never sends it still gets the screen.
        self._init_timer = self.server.reactor.callLater(DISPLAY_INIT_TIMEOUT, self.start_stream)

    def handle_INIT(self, fields: dict[str, Any]) -> None:
        self.cache_params = fields
        self.start_stream()

    def start_stream(self) -> None:
        if self.streaming or not self.connected:
            return
        if self._init_timer.active():
            self._init_timer.cancel()
        self.streaming = True
        render = self.server.render
        self.send("INVAL_ALL_PALETTES")
        self.send(
            "SURFACE_CREATE",
            {
                "surface_id": render.primary.id,
                "width": render.width,
                "height": render.height,
                "format": render.primary.format,
                "flags": SurfaceFlags.PRIMARY,
            },
        )
        self.push_drawable(render.subscribe(self))
        self.send("MARK")

    def push_drawable(self, drawable: Drawable) -> None:
        """Queue a drawable, dropping unsent ones it covers; past one surface's worth of
        unsent pixels, turn the backlog into one refresh of the area it covers."""
        rect = drawable.rect
        if self.refresh is not None:  # a refresh not yet taken already shows this update
            grown = self.refresh.rect.union(rect)
            self.pending_pixels += grown.area - self.refresh.rect.area
            self.refresh.rect = grown
            self._count_coalesced()
            return
        for it in [it for it in self.pipe if isinstance(it, DrawableItem)]:
            if it.drawable.surface_id == drawable.surface_id and rect.contains(it.drawable.rect):
                self._drop(it)
        if self.pending_pixels > 0 and self.pending_pixels + rect.area > self.server.render.primary.rect.area:
            bbox = rect
            for it in [it for it in self.pipe if isinstance(it, DrawableItem)]:
                bbox = bbox.union(it.drawable.rect)
                self._drop(it)
            self._count_coalesced()  # this update goes into the refresh too
            self.refresh = RefreshItem(bbox)
            self.pending_pixels += bbox.area
            self.queue(self.refresh)
            return
        self.pending_pixels += rect.area
        self.queue(DrawableItem(drawable))

    def _count_coalesced(self) -> None:
        self.coalesced += 1
        self.server.render.counters.coalesced += 1

    def _drop(self, item: DrawableItem) -> None:
        self.pipe.remove(item)
        self.pending_pixels -= _area(item)
        self._count_coalesced()

    def item_sent(self, item: PipeItem) -> None:
        if isinstance(item, DrawableItem):
            self.pending_pixels -= _area(item)
            self.draws_sent += 1
            self.server.render.counters.sends += 1

    def item_dropped(self, item: PipeItem) -> None:
        if isinstance(item, DrawableItem):
            self.pending_pixels -= _area(item)

    def on_disconnected(self) -> None:
        if self._init_timer.active():
            self._init_timer.cancel()
        self.server.render.unsubscribe(self)


def _area(item: DrawableItem) -> int:
    return item.rect.area if isinstance(item, RefreshItem) else item.drawable.rect.area
