"""The cursor channel: every client shows the one shared cursor (shape, position, visibility).

Each client has its own cache of shapes (ids it was told to CACHE_ME); a shape it
already holds is sent FROM_CACHE, header only. Past CACHE_LIMIT shapes the
cache is dropped with INVAL_ALL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..render.cursor import CURSOR_FLAGS_CACHE_ME, CURSOR_FLAGS_FROM_CACHE, CURSOR_FLAGS_NONE, CursorService, CursorShape
from ..wire.enums import ChannelType, MsgCursor
from ..wire.link import LinkRequest
from ..wire.messages import encode_body, message
from .base import ChannelClient, ChannelHost
from .pipe import PipeItem

if TYPE_CHECKING:
    from .interfaces import ClientView

_MOVE = message(ChannelType.CURSOR, "MOVE")

CACHE_LIMIT = 64


class CursorChannelClient(ChannelClient):
    channel_type = ChannelType.CURSOR
    handles_acks = True

    def __init__(
        self, host: ChannelHost, client: ClientView, request: LinkRequest, mini_header: bool, secure: bool, cursor: CursorService
    ) -> None:
        self.cursor = cursor
        super().__init__(host, client, request, mini_header, secure)

    def on_connected(self) -> None:
        self.cached: set[int] = set()
        self.coalesced = 0
        cursor = self.cursor
        shape = cursor.shape
        self.send(
            "INIT",
            {
                "position": {"x": cursor.x, "y": cursor.y},
                "trail_length": 0,
                "trail_frequency": 0,
                "visible": int(cursor.visible and shape is not None),
                "cursor": self._cursor(shape) if shape is not None else {"cursor_flags": CURSOR_FLAGS_NONE},
            },
        )
        cursor.subscribe(self)

    def _cursor(self, shape: CursorShape) -> dict[str, object]:
        if shape.unique in self.cached:
            return shape.wire(CURSOR_FLAGS_FROM_CACHE)
        if len(self.cached) >= CACHE_LIMIT:
            self.send("INVAL_ALL")
            self.cached.clear()
        self.cached.add(shape.unique)
        return shape.wire(CURSOR_FLAGS_CACHE_ME)

    def cursor_set(self, shape: CursorShape) -> None:
        c = self.cursor
        self.send("SET", {"position": {"x": c.x, "y": c.y}, "visible": 1, "cursor": self._cursor(shape)})

    def cursor_move(self, x: int, y: int) -> None:
        body = encode_body(_MOVE, {"position": {"x": x, "y": y}})
        items = self.pipe.items
        if items and items[-1].live and items[-1].msg_type == MsgCursor.MOVE:
            items[-1].data = body  # only the newest unsent position matters (same size)
            self.coalesced += 1
            return
        self.queue(PipeItem(_MOVE.id, body))

    def cursor_hide(self) -> None:
        self.send("HIDE")

    def on_disconnected(self) -> None:
        self.cursor.unsubscribe(self)
