"""The display channel: the primary surface, then its drawables as DRAW_COPY, at the client's pace.

The render service pushes shared drawables into this client's `DisplayPipe` (which
coalesces and stays bounded). At send time the message is marshalled for this
client: the DRAW_COPY fields and the image descriptor (id, flags) are a small prefix
built once per distinct value and kept on the drawable, followed by the codec's
shared payload bytes, which are never copied per client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..codecs import JPEG, LOSSY_CODECS, glz
from ..codecs.choice import GLZ, LZ4_MIN_BPS, Decoders, allows_glz, choose_codec, decoders, lossy_allowed, zlib_glz_wanted
from ..render.copy_bits import CopyBits
from ..render.drawable import Drawable
from ..render.rect import Rect
from ..render.region import Region
from ..render.surface import Surface
from ..wire.enums import (
    BrushType,
    ChannelType,
    ClipType,
    DisplayCap,
    ImageCompression,
    ImageFlags,
    ImageType,
    ResourceType,
    Rop,
    ScaleMode,
    SurfaceFlags,
)
from ..wire.link import LinkRequest
from ..wire.messages import encode_body, message
from ..wire.schema import encode_split
from .base import ChannelClient, ChannelHost, Parts
from .display_streams import ClientStreams, StreamFrameItem
from .pipe import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS, CopyItem, DisplayPipe, DrawItem, PipeItem, RefreshItem
from .pixmap_cache import ClientPixmapCache, PixmapCacheBudget, wire_id

if TYPE_CHECKING:
    from ..render.glz_group import GlzGeneration
    from ..render.service import RenderService
    from .interfaces import ClientView

DISPLAY_INIT_TIMEOUT = 5.0
DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY")
COPY_BITS = message(ChannelType.DISPLAY, "COPY_BITS")
DRAW_FILL = message(ChannelType.DISPLAY, "DRAW_FILL")


@dataclass
class DisplaySettings:
    """The server-wide display policy every display client reads (the admin may change it)."""

    image_compression: str = "auto_glz"  # --image-compression; codecs.choice.choose_codec()
    jpeg_wan_compression: str = "auto"  # --jpeg-wan-compression; codecs.choice.lossy_allowed()
    zlib_glz_wan_compression: str = "auto"  # --zlib-glz-wan-compression: GLZ deflated again for WAN clients
    max_items: int = DEFAULT_MAX_ITEMS
    max_bytes: int = DEFAULT_MAX_BYTES
    pixmap_caches: PixmapCacheBudget = field(default_factory=PixmapCacheBudget)  # every client's model
    video_codecs: tuple[str, ...] = ("mjpeg",)  # --video-codecs: stream codecs in order of preference


def draw_copy_parts(drawable: Drawable, codec: str | None, image_id: int, image_flags: int) -> list[bytes]:
    """The parts of one DRAW_COPY: a per-client prefix built once per value (kept by the
    payload service), then the codec's shared payload. codec None draws the image from
    the client's pixmap cache (FROM_CACHE, no payload)."""

    def build() -> list[bytes]:
        r = drawable.rect
        image: dict[str, Any] = {"id": image_id, "flags": image_flags, "width": r.width, "height": r.height}
        if codec is None:
            image["type"] = ImageType.FROM_CACHE
        else:
            payload = drawable.payload(codec)
            assert payload is not None, "marshalled before its encode"
            image.update(type=payload.image_type, **payload.fields)
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
        if tail is None:
            return [head]
        assert codec is not None
        return [head, *drawable.service.pieces(drawable, codec, tail)]  # the payload's shared pieces

    return drawable.service.prefix(drawable, (codec, image_id, image_flags), build)


def draw_fill_parts(drawable: Drawable, colour: int) -> list[bytes]:
    """The one DRAW_FILL body every client gets for a drawable of one colour."""

    def build() -> list[bytes]:
        body = encode_body(
            DRAW_FILL,
            {
                "surface_id": drawable.surface_id,
                "box": drawable.rect.wire(),
                "clip_type": ClipType.NONE,
                "brush_type": BrushType.SOLID,
                "color": colour,
                "rop_descriptor": Rop.OP_PUT,
                "mask_flags": 0,
                "mask_pos": {"x": 0, "y": 0},
                "mask_bitmap": None,
            },
        )
        return [body]

    return drawable.service.prefix(drawable, ("fill",), build)


def copy_bits_body(op: CopyBits) -> bytes:
    """The one COPY_BITS body every client gets for a move."""
    if op.body is None:
        op.body = encode_body(
            COPY_BITS,
            {
                "surface_id": op.surface_id,
                "box": op.dest.wire(),
                "clip_type": ClipType.NONE,
                "src_pos": {"x": op.src.left, "y": op.src.top},
            },
        )
    return op.body


class DisplayChannelClient(ChannelClient):
    channel_type = ChannelType.DISPLAY
    handles_acks = True
    pipe: DisplayPipe

    def __init__(
        self,
        host: ChannelHost,
        client: ClientView,
        request: LinkRequest,
        mini_header: bool,
        secure: bool,
        render: RenderService,
        settings: DisplaySettings,
    ) -> None:
        self.render, self.settings = render, settings
        self.preferred: int | None = None  # the client's DISPLAY_PREFERRED_COMPRESSION
        self.glz_window = 0  # from DISPLAY_INIT
        self.glz: GlzGeneration | None = None  # the GLZ generation this client is a member of
        self.glz_used = False  # it was ever a member: its GLZ window holds ids (render/glz_group.py)
        self.pixmap_cache = ClientPixmapCache(0, 0)  # none until DISPLAY_INIT gives its size
        self.lossy = Region()  # the areas of the surface this client holds lossy
        self.upgraded_at = float("-inf")  # when the render service last pushed it an upgrade
        self._codec_key: tuple[Any, ...] | None = None  # what `codec` was chosen from, and the choice
        self._codec = ""
        self._decoders_key: tuple[int, int | None] | None = None
        self._codecs_key: tuple[Any, ...] | None = None  # codecs_now()'s, likewise
        self._codecs = ("", "")
        self._glz_takes: dict[tuple[Any, ...], bool] = {}  # glz_takes()'s choice, by what it depends on
        self._decoders = Decoders(lz4=False, glz=False)
        self.streams = ClientStreams(self)  # the video streams it plays (channels/display_streams.py)
        super().__init__(host, client, request, mini_header, secure)

    def make_pipe(self) -> DisplayPipe:
        s = self.render.primary
        max_bytes = max(self.settings.max_bytes, 2 * s.width * s.height * 4)
        pipe = DisplayPipe(DRAW_COPY.id, lambda: self.codec, self.settings.max_items, max_bytes, COPY_BITS.id)
        pipe.before_collapse = lambda: self.leave_glz("its pipe reached its bounds")
        return pipe

    @property
    def decoders(self) -> Decoders:
        """What this client decodes: its caps, DISPLAY_INIT and preference (codecs.choice)."""
        key = (self.glz_window, self.preferred)  # the caps never change
        if key != self._decoders_key:
            self._decoders_key, self._decoders = key, decoders(self.request.channel_caps, self.glz_window, self.preferred)
        return self._decoders

    @property
    def decodes_lz4(self) -> bool:
        return self.decoders.lz4

    @property
    def fast_link(self) -> bool:
        """Fast enough that LZ4's bytes cost less than LZ's CPU (codecs.choice.LZ4_MIN_BPS):
        not judged WAN, and no bandwidth measured below that (none measured yet counts as fast)."""
        link = self.client.link
        return not link.is_wan and (link.bandwidth is None or link.bandwidth >= LZ4_MIN_BPS)

    @property
    def codec(self) -> str:
        """The lossless codec this client gets for a synthetic picture (and for lossless
        upgrades): what the setting gives a picture that is not photo-like. Asked a few
        times per message per client: chosen again only when what it depends on changed."""
        lan = self.fast_link
        key = (self.settings.image_compression, self.glz_window, self.preferred, lan)
        if key != self._codec_key:
            self._codec_key = key
            self._codec = choose_codec(self.settings.image_compression, self.decoders, self.preferred, lan=lan)
        return self._codec

    @property
    def lossy_allowed(self) -> bool:
        """JPEG for this client? `--jpeg-wan-compression`, and under auto its link's verdict."""
        return lossy_allowed(self.settings.jpeg_wan_compression, self.client.link.is_wan)

    def codec_for(self, drawable: Drawable) -> str:
        """The codec of one drawable for this client: JPEG where lossy is allowed and the
        picture is photo-like (decided once per drawable), else the lossless codec the
        setting gives this picture (QUIC for photo-like ones under auto)."""
        photo = drawable.photo_like()
        if photo and self.lossy_allowed:
            return JPEG
        if not photo:
            return self.codec
        return choose_codec(self.settings.image_compression, self.decoders, self.preferred, photo_like=True, lan=self.fast_link)

    def lossless_codec_for(self, drawable: Drawable) -> str:
        """The lossless codec of one drawable (an upgrade of an area held lossy)."""
        if not drawable.photo_like():
            return self.codec
        return choose_codec(self.settings.image_compression, self.decoders, self.preferred, photo_like=True, lan=self.fast_link)

    # --- the shared GLZ dictionary (render/glz_group.py) ---------------------------------
    def glz_candidate(self) -> tuple[int, int] | None:
        """(dictionary id, window) while this client may start a GLZ generation: it decodes
        GLZ, its setting gives GLZ, it is streaming and keeping up, and its window never
        held an image."""
        if self.glz_used or self.glz is not None or not self.streaming or not self.connected:
            return None
        if not self.decoders.glz or not allows_glz(self.settings.image_compression, self.preferred) or not self.pipe.accepting:
            return None
        params = self.cache_params or {}
        return int(params.get("glz_dictionary_id", 0)), self.glz_window

    def glz_takes(self, drawable: Drawable) -> bool:
        """Whether this member would take `drawable` as GLZ (not JPEG, not QUIC for a photo)."""
        photo = drawable.photo_like()
        if photo and self.lossy_allowed:
            return False
        cache = self.pixmap_cache
        if cache.takes(drawable.area) and cache.drawable_from(drawable.content_key(), False) is not None:
            return False  # a repeat it holds: FROM_CACHE costs less than any image
        lan = self.fast_link
        key = (self.settings.image_compression, self.glz_window, self.preferred, lan, photo)
        takes = self._glz_takes.get(key)
        if takes is None:
            if len(self._glz_takes) > 16:
                self._glz_takes.clear()
            chosen = choose_codec(self.settings.image_compression, self.decoders, self.preferred, photo_like=photo, lan=lan, glz_ok=True)
            takes = self._glz_takes[key] = chosen == GLZ
        return takes

    def glz_wants_zlib(self) -> bool:
        return zlib_glz_wanted(self.settings.zlib_glz_wan_compression, self.client.link.is_wan)

    def leave_glz(self, why: str) -> None:
        """Leave the GLZ generation for good: unsent GLZ images go in this client's other
        codec, and nothing of this pipe is pinned any more (it may coalesce again)."""
        if self.glz is None:
            return
        self.render.glz.leave(self, why)
        for it in self.pipe:
            if isinstance(it, DrawItem) and it.pinned:
                it.codec = None

    def codecs_now(self) -> tuple[str, str]:
        """(codec for a picture that is not photo-like, codec for a photo-like one): what
        `codec_for` gives now, read once a frame by the render service for all its drawables."""
        lan, lossy = self.fast_link, self.lossy_allowed
        key = (self.settings.image_compression, self.glz_window, self.preferred, lan, lossy)
        if key != self._codecs_key:
            photo = (
                JPEG if lossy else choose_codec(self.settings.image_compression, self.decoders, self.preferred, photo_like=True, lan=lan)
            )
            self._codecs_key, self._codecs = key, (self.codec, photo)
        return self._codecs

    def request_payload(self, drawable: Drawable, codec: str) -> bool:
        """At commit: start the encode in `codec` this client will need, unless its pixmap
        cache already holds the picture (a repeat then costs no encode at all). True if it
        asked."""
        cache = self.pixmap_cache
        if cache.takes(drawable.area) and cache.drawable_from(drawable.content_key(), codec in LOSSY_CODECS):
            return False  # should it be evicted before this is sent, marshal asks then
        drawable.request(codec)
        return True

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
        if not self.streaming:  # a second INIT changes nothing the client already holds
            self.pixmap_cache.close()
            self.pixmap_cache = ClientPixmapCache(
                fields["pixmap_cache_id"], fields["pixmap_cache_size"], budget=self.settings.pixmap_caches, on_evict=self._pixmap_evicted
            )
            self.glz_window = max(0, int(fields["glz_dictionary_window_size"]))
        self.start_stream()

    def handle_PREFERRED_COMPRESSION(self, fields: dict[str, Any]) -> None:
        value = fields["image_compression"]
        name = ImageCompression(value).name if value in ImageCompression._value2member_map_ else str(value)
        self.preferred = value
        if self.glz is not None and not allows_glz(self.settings.image_compression, value):
            self.leave_glz("its preferred compression gives no GLZ")
        self.log.info("{cc}: client prefers {name} compression: sending {codec}", cc=self, name=name, codec=self.codec)

    def handle_STREAM_REPORT(self, fields: dict[str, Any]) -> None:
        self.streams.report(fields)  # channels/display_streams.py

    def handle_PREFERRED_VIDEO_CODEC_TYPE(self, fields: dict[str, Any]) -> None:
        self.streams.prefer(fields["codecs"])  # channels/display_streams.py

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

    def push_drawable(self, drawable: Drawable, codec: str | None = None) -> None:
        """`codec` is a GLZ generation's payload key where this member gets it as GLZ.
        Only the enqueue happens here, inside the frame: the marshal and the write come in
        this client's send turn (spice_twisted/turns.py)."""
        self.note_work()
        self.pipe.push(drawable, codec)
        self.render.sends.wake(self)

    def push_lossless(self, drawable: Drawable) -> None:
        """An area this client holds lossy, again in its lossless codec."""
        self.note_work()
        self.pipe.push(drawable, self.lossless_codec_for(drawable))
        self.render.sends.wake(self)

    def encode_ready(self) -> None:
        """The payload this pipe waits for is in. Every pipe waiting for it hears so in the
        same callback: each sends in its own send turn, not all inside that callback."""
        self.awaiting_encode = False
        self.render.sends.wake(self)

    @property
    def idle(self) -> bool:
        return not self.pipe and self._partial is None

    def push_copy(self, op: CopyBits) -> None:
        self.note_work()
        self.pipe.push_copy(op)
        self.render.sends.wake(self)

    def surface_changed(self, surface: Surface) -> None:
        """A new primary: what the pipe held is for the old one; start over on the new one."""
        self.leave_glz("the surface changed")
        self.pipe.reset()
        self.lossy = Region()
        self.send("SURFACE_DESTROY", {"surface_id": surface.id})
        self.pipe.max_bytes = max(self.settings.max_bytes, 2 * surface.width * surface.height * 4)
        self._show_surface(surface)

    # --- marshalling at send time --------------------------------------------------------
    def marshal(self, item: PipeItem) -> Parts | None:
        if isinstance(item, RefreshItem):
            self.pipe.expand_head(self.render.snapshot, self.render.max_rects)
            return []  # the drain loop sees the new head and marshals that
        if isinstance(item, CopyItem):
            return [copy_bits_body(item.op)]
        if isinstance(item, StreamFrameItem):
            return self.streams.marshal(item)
        if not isinstance(item, DrawItem):
            return [item.data]
        return self._marshal_draw(item)

    def _marshal_draw(self, item: DrawItem) -> Parts | None:
        """The pixmap cache first (a hit needs no payload), else the payload once encoded.
        The cache model changes here, as the message is about to be written: the drain
        loop writes what marshal returns before anything else can happen to this pipe."""
        d = item.drawable
        colour = d.solid_colour()
        if colour is not None:
            self.pipe.waiting_on = None
            item.lossy = False
            item.msg_type = DRAW_FILL.id
            return draw_fill_parts(d, colour)
        if item.pinned:
            return self._marshal_glz(item)
        codec = item.codec or self.codec_for(d)
        cache = self.pixmap_cache
        key = d.content_key() if cache.takes(d.area) else None
        if key is not None:
            entry = cache.drawable_from(key, codec in LOSSY_CODECS)
            if entry is not None:
                self.pipe.waiting_on = None
                cache.hit(key, d.nbytes(codec))
                item.lossy = entry.lossy
                return draw_copy_parts(d, None, wire_id(key), 0)
            if cache.lookup(key) is not None:  # held lossy, wanted lossless: the client drops it first
                self._queue_inval([cache.remove(key)])
                return []  # the drain loop sends that, then comes back to this item
        if d.payload(codec) is None:
            d.request(codec)
            if d.payload(codec) is None:
                if d.service.failed(d, codec):
                    return []
                self.pipe.waiting_on = item
                d.when_ready(codec, self.encode_ready)
                return None
        self.pipe.waiting_on = None
        item.lossy = codec in LOSSY_CODECS
        if key is not None and cache.id_free(key):
            item.inval = cache.add(key, d.area, item.lossy)
            return draw_copy_parts(d, codec, wire_id(key), ImageFlags.CACHE_ME)
        return draw_copy_parts(d, codec, d.id, 0)

    def _pixmap_evicted(self) -> None:
        """Another client's add took entries from this client's model: INVAL_LIST them at
        the next turn, when no drain loop is in the middle of a marshal."""
        self.reactor.callLater(0, self._send_evicted)

    def _send_evicted(self) -> None:
        ids = self.pixmap_cache.take_evicted()
        if ids and self.connected:
            self._queue_inval(ids)
            self.drain()

    def _marshal_glz(self, item: DrawItem) -> Parts | None:
        """An image of this member's GLZ generation: every member gets it, never from the
        pixmap cache (the client must hold it in its GLZ window; a repeat some member's
        cache holds is not made a GLZ image at all), ZLIB-GLZ where wanted. A member that
        joined late gets the shared payload with its own header (its ids count from its
        first image: render/glz_group.py)."""
        d, codec = item.drawable, item.codec
        assert codec is not None
        payload = d.payload(codec)
        gen = self.glz
        if payload is None:
            if d.service.failed(d, codec):
                self.leave_glz("a GLZ encode failed")  # the client would miss this id
                return self._marshal_draw(item)  # in its other codec, now
            self.pipe.waiting_on = item
            d.when_ready(codec, self.encode_ready)
            return None
        self.pipe.waiting_on = None
        item.lossy = False
        base = gen.base.get(self, 0) if gen is not None else 0
        if self.glz_wants_zlib() and gen is not None:
            zcodec = gen.zcodec_for(base)
            if d.payload(zcodec) is not None:
                codec, base = zcodec, 0  # deflated with its header rebased already
        cache = self.pixmap_cache  # the client may cache it too, for a later FROM_CACHE
        key = d.content_key() if cache.takes(d.area) else None
        if key is not None and cache.lookup(key) is None and cache.id_free(key):
            item.inval = cache.add(key, d.area, False)
            parts = draw_copy_parts(d, codec, wire_id(key), ImageFlags.CACHE_ME)
        else:
            parts = draw_copy_parts(d, codec, d.id, 0)
        if base:
            # Only the first piece changes (its header): a copy of one piece for a late joiner.
            head, first, *more = parts
            parts = [head, glz.rebased_header(first, base) + first[glz.HEADER_BYTES :], *more]
        return parts

    def _queue_inval(self, ids: list[int]) -> None:
        """INVAL_LIST next, before anything else in the pipe."""
        resources = [{"type": ResourceType.PIXMAP, "id": i} for i in ids]
        self.pipe.appendleft(PipeItem(*self.core.encode("INVAL_LIST", {"resources": resources})))

    def item_sent(self, item: PipeItem) -> None:
        if isinstance(item, DrawItem):
            self.draws_sent += 1
            self.render.counters.sends += 1
            if item.lossy:
                self.lossy.add(item.drawable.rect)
                self.render.lossy_sent()
            elif self.lossy:
                self.lossy.remove(item.drawable.rect)
            if item.inval:  # what the cache let go, told right after the image that took its place
                self._queue_inval(item.inval)
            self.pipe.sent(item)
        elif isinstance(item, CopyItem) and self.lossy:
            # What the client held lossy moves with the pixels; where it lands, the old goes.
            op = item.op
            moved = self.lossy.intersect(op.src).translate(*op.offset)
            self.lossy.remove(op.dest)
            self.lossy.add(moved)
        elif isinstance(item, StreamFrameItem):
            self.streams.sent(item)

    def item_dropped(self, item: PipeItem) -> None:
        if isinstance(item, DrawItem):
            item.drawable.dropped(self.pipe.id)
        elif isinstance(item, StreamFrameItem):
            self.streams.dropped(item)

    def on_disconnected(self) -> None:
        if self._init_timer.active():
            self._init_timer.cancel()
        self.leave_glz("disconnected")
        self.render.unsubscribe(self)
        self.streams.close()
        self.pipe.reset()
        self.pixmap_cache.close()
