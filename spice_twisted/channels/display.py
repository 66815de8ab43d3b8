"""The display channel: the primary surface, then its drawables as DRAW_COPY, at the client's pace."""

from __future__ import annotations

from typing import Any

from ..render.drawable import Drawable
from ..wire.enums import ChannelType, SurfaceFlags
from ..wire.messages import message
from .base import ChannelClient

DISPLAY_INIT_TIMEOUT = 5.0
_DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY").id


class DisplayChannelClient(ChannelClient):
    channel_type = ChannelType.DISPLAY
    handles_acks = True

    def on_connected(self) -> None:
        self.streaming = False
        self.cache_params: dict[str, Any] | None = None
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
        self.queue(_DRAW_COPY, drawable.draw_copy_body)

    def on_disconnected(self) -> None:
        if self._init_timer.active():
            self._init_timer.cancel()
        self.server.render.unsubscribe(self)
