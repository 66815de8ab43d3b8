"""The display channel: the primary surface, then its drawables as DRAW_COPY, at the client's pace.

The render service pushes shared drawables into this client's `DisplayPipe` (which
coalesces and stays bounded). At send time the message is marshalled for this
client: the DRAW_COPY fields and the image descriptor (id, flags) are a small prefix
built once per distinct value and kept on the drawable, followed by the codec's
shared payload bytes, which are never copied per client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..codecs.choice import choose_codec
from ..render.drawable import Drawable
from ..render.rect import Rect
from ..render.region import Region
from ..render.surface import Surface
from ..wire.enums import ChannelType, ClipType, DisplayCap, ImageCompression, Rop, ScaleMode, SurfaceFlags
from ..wire.link import LinkRequest
from ..wire.messages import message
from ..wire.schema import encode_split
from .base import ChannelClient, ChannelHost, Parts
from .pipe import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS, DisplayPipe, DrawItem, PipeItem, RefreshItem

if TYPE_CHECKING:
    from ..render.service import RenderService
    from ..server import Client

DISPLAY_INIT_TIMEOUT = 5.0
DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY")


@dataclass
class DisplaySettings:
    """The server-wide display policy every display client reads (the admin may change it)."""

    image_compression: str = "auto"
    jpeg_wan_compression: str = "auto"  # --jpeg-wan-compression; codecs.choice.lossy_allowed()
    max_items: int = DEFAULT_MAX_ITEMS
    max_bytes: int = DEFAULT_MAX_BYTES


def draw_copy_parts(drawable: Drawable, codec: str, image_id: int, image_flags: int) -> tuple[bytes, bytes]:
    """(per-client prefix, shared payload) of one DRAW_COPY, the prefix built once per value."""
    key = (codec, image_id, image_flags)
    parts = drawable.prefixes.get(key)
    if parts is None:
        payload = drawable.payloads[codec]
        r = drawable.rect
        image = {"id": image_id, "type": payload.image_type, "flags": image_flags, "width": r.width, "height": r.height, **payload.fields}
        head, tail = encode_split(
            DRAW_COPY.layout,
            {
                "surface_id": drawable.surface_id,
                "box": r.wire(),
                "clip_type": ClipType.NONE,
                "src_bitmap": image,
                "src_area": Rect(0, 0, r.width, r.height).wire(),
                "rop_descriptor": Rop.OP_PUT,
                "scale_mode": ScaleMode.NEAREST,
                "mask_flags": 0,
                "mask_pos": {"x": 0, "y": 0},
                "mask_bitmap": None,
            },
        )
        assert tail is not None
        parts = drawable.prefixes[key] = (head, tail)
    return parts


class DisplayChannelClient(ChannelClient):
    channel_type = ChannelType.DISPLAY
    handles_acks = True
    pipe: DisplayPipe

    def __init__(
        self,
        host: ChannelHost,
        client: Client,
        request: LinkRequest,
        mini_header: bool,
        secure: bool,
        render: RenderService,
        settings: DisplaySettings,
    ) -> None:
        self.render, self.settings = render, settings
        self.preferred: int | None = None  # the client's DISPLAY_PREFERRED_COMPRESSION
        self.decodes_lz4 = DisplayCap.LZ4_COMPRESSION in request.channel_caps
        super().__init__(host, client, request, mini_header, secure)

    def make_pipe(self) -> DisplayPipe:
        s = self.render.primary
        max_bytes = max(self.settings.max_bytes, 2 * s.width * s.height * 4)
        return DisplayPipe(DRAW_COPY.id, lambda: self.codec, self.settings.max_items, max_bytes)

    @property
    def codec(self) -> str:
        return choose_codec(self.settings.image_compression, self.decodes_lz4, self.preferred)

    @property
    def coalesced(self) -> int:
        return self.pipe.coalesced

    def on_connected(self) -> None:
        self.streaming = False
        self.cache_params: dict[str, Any] | None = None
        # Upstream waits for DISPLAY_INIT; a client that never sends it still gets the screen.
        self._init_timer = self.reactor.callLater(DISPLAY_INIT_TIMEOUT, self.start_stream)

    def handle_INIT(self, fields: dict[str, Any]) -> None:
        self.cache_params = fields
        self.start_stream()

    def handle_PREFERRED_COMPRESSION(self, fields: dict[str, Any]) -> None:
        value = fields["image_compression"]
        name = ImageCompression(value).name if value in ImageCompression._value2member_map_ else str(value)
        self.preferred = value
        self.log.info("{cc}: client prefers {name} compression: sending {codec}", cc=self, name=name, codec=self.codec)

    def start_stream(self) -> None:
        if self.streaming or not self.connected:
            return
        if self._init_timer.active():
            self._init_timer.cancel()
        self.streaming = True
        self.send("INVAL_ALL_PALETTES")
        self._show_surface(self.render.primary)
        self.render.subscribe(self)

    def _show_surface(self, surface: Surface) -> None:
        """SURFACE_CREATE, MONITORS_CONFIG where advertised, the whole surface, MARK (upstream's order)."""
        self.send(
            "SURFACE_CREATE",
            {
                "surface_id": surface.id,
                "width": surface.width,
                "height": surface.height,
                "format": surface.format,
                "flags": SurfaceFlags.PRIMARY,
            },
        )
        if DisplayCap.MONITORS_CONFIG in self.request.channel_caps:
            head = {"monitor_id": 0, "surface_id": surface.id, "width": surface.width, "height": surface.height, "x": 0, "y": 0, "flags": 0}
            self.send("MONITORS_CONFIG", {"count": 1, "max_allowed": 1, "heads": [head]})
        self.note_work()
        self.pipe.add_refresh(Region(surface.rect))  # taken when the client is ready for it
        self.send("MARK")

    # --- from the render service -------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self.pipe.accepting

    def absorb(self, rect: Rect) -> None:
        self.pipe.absorb(rect)

    def push_drawable(self, drawable: Drawable) -> None:
        self.note_work()
        self.pipe.push(drawable)
        self.drain()

    def surface_changed(self, surface: Surface) -> None:
        """A new primary: what the pipe held is for the old one; start over on the new one."""
        self.pipe.reset()
        self.send("SURFACE_DESTROY", {"surface_id": surface.id})
        self.pipe.max_bytes = max(self.settings.max_bytes, 2 * surface.width * surface.height * 4)
        self._show_surface(surface)

    # --- marshalling at send time --------------------------------------------------------
    def marshal(self, item: PipeItem) -> Parts | None:
        if isinstance(item, RefreshItem):
            self.pipe.expand_head(self.render.snapshot, self.render.max_rects)
            return []  # the drain loop sees the new head and marshals that
        if not isinstance(item, DrawItem):
            return [item.data]
        d, codec = item.drawable, self.codec
        if codec not in d.payloads:
            d.request(codec)
            if codec not in d.payloads:
                if codec in d.failed:
                    return []
                self.pipe.waiting_on = item
                d.when_ready(codec, self.encode_ready)
                return None
        self.pipe.waiting_on = None
        head, tail = draw_copy_parts(d, codec, d.id, 0)
        return [head, tail]

    def item_sent(self, item: PipeItem) -> None:
        if isinstance(item, DrawItem):
            self.draws_sent += 1
            self.render.counters.sends += 1
            self.pipe.sent(item)

    def item_dropped(self, item: PipeItem) -> None:
        if isinstance(item, DrawItem):
            item.drawable.dropped(self.pipe.id)

    def on_disconnected(self) -> None:
        if self._init_timer.active():
            self._init_timer.cancel()
        self.render.unsubscribe(self)
        self.pipe.reset()
