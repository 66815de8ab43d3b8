"""The display channel: the primary surface, then its drawables as DRAW_COPY, at the client's pace.

The pipe coalesces: a drawable that covers older unsent ones replaces them, and a
backlog of more than one surface's worth of pixels collapses into one snapshot of
the whole surface, so a slow client costs bounded memory and never holds up others.
"""

from __future__ import annotations

from typing import Any

from ..render.drawable import DRAW_COPY, Drawable
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


class DisplayChannelClient(ChannelClient):
    channel_type = ChannelType.DISPLAY
    handles_acks = True

    def on_connected(self) -> None:
        self.streaming = False
        self.cache_params: dict[str, Any] | None = None
        self.pending_pixels = 0
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
        """Queue a drawable, dropping unsent ones it covers. A backlog of more than one
        surface's worth of pixels collapses into one fresh copy of the area it covers."""
        rect = drawable.rect
        for it in [it for it in self.pipe if isinstance(it, DrawableItem)]:
            if it.drawable.surface_id == drawable.surface_id and rect.contains(it.drawable.rect):
                self._drop(it)
        render = self.server.render
        if self.pending_pixels > 0 and self.pending_pixels + rect.area > render.primary.rect.area:
            backlog = [it for it in self.pipe if isinstance(it, DrawableItem)]
            bbox = rect
            for it in backlog:
                bbox = bbox.union(it.drawable.rect)
                self._drop(it)
            drawable = render.snapshot(bbox)  # the surface now: already includes this update
        self.pending_pixels += drawable.rect.area
        self.queue(DrawableItem(drawable))

    def _drop(self, item: DrawableItem) -> None:
        self.pipe.remove(item)
        self.pending_pixels -= item.drawable.rect.area
        self.coalesced += 1
        self.server.render.counters.coalesced += 1

    def item_sent(self, item: PipeItem) -> None:
        if isinstance(item, DrawableItem):
            self.pending_pixels -= item.drawable.rect.area
            self.draws_sent += 1
            self.server.render.counters.sends += 1

    def item_dropped(self, item: PipeItem) -> None:
        if isinstance(item, DrawableItem):
            self.pending_pixels -= item.drawable.rect.area

    def on_disconnected(self) -> None:
        if self._init_timer.active():
            self._init_timer.cancel()
        self.server.render.unsubscribe(self)
