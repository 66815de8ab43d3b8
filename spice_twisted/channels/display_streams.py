"""One display client's side of the video streams (render/streams.py): its tier, its frames.

The render service hands a client each frame `Drawable` of a stream with the tier codec
it gets; the client's pipe holds it as a `StreamFrameItem` and at send time marshals a
STREAM_DATA: a 12-byte head of its own (the frame's multimedia time is this client's)
and the tier's one shared MJPEG payload, never copied per client. A newer frame drops
the older unsent ones of its stream, so a slow client skips frames instead of queueing
them, and a pipe behind a refresh takes only the area (the refresh shows it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..codecs.video import MJPEG, MJPEG_LOW, WIRE_CODEC
from ..wire.enums import ChannelType, ClipType, DisplayCap, StreamFlags
from ..wire.messages import message
from ..wire.schema import encode_split
from .pipe import COVER_WINDOW, PipeItem

if TYPE_CHECKING:
    from ..render.drawable import Drawable
    from ..render.streams import Stream
    from .base import Parts
    from .display import DisplayChannelClient

STREAM_DATA = message(ChannelType.DISPLAY, "STREAM_DATA")
# Frames are stamped this far ahead of the multimedia clock: spice-gtk drops a frame whose
# time has passed when it arrives and shows the others at their time.
PLAY_AHEAD_MS = 100
# A client whose pipe holds more than this many bytes when a frame comes is behind: it
# gets the low tier (half the frames, lower quality) until its pipe drains.
LOW_TIER_BACKLOG = 1 << 20


class StreamFrameItem(PipeItem):
    """A pipe's reference to one shared stream frame, in one tier's codec."""

    __slots__ = ("stream", "frame", "codec")

    def __init__(self, msg_type: int, stream: Stream, frame: Drawable, codec: str) -> None:
        self.msg_type, self.data, self.live = msg_type, b"", True
        self.nbytes = frame.nbytes(codec)
        self.stream, self.frame, self.codec = stream, frame, codec


class ClientStreams:
    """The streams one display client plays (the render service's StreamPlayer)."""

    def __init__(self, cc: DisplayChannelClient) -> None:
        self.cc = cc
        self.shown: dict[int, Stream] = {}  # streams created on the client, by id
        self.frames_sent = 0
        self.low = False  # on the low tier

    def tier(self, stream: Stream) -> str | None:
        """MJPEG for a client that advertises it (spice-gtk always, spice-html5 too); the
        low tier while its link is judged WAN or its pipe is backed up."""
        if not self.cc.connected or DisplayCap.CODEC_MJPEG not in self.cc.request.channel_caps:
            return None
        self.low = self.cc.client.link.is_wan or self.cc.pipe_bytes > LOW_TIER_BACKLOG
        return MJPEG_LOW if self.low else MJPEG

    def start(self, s: Stream) -> None:
        self.shown[s.id] = s
        r = s.rect
        self.cc.send(
            "STREAM_CREATE",
            {
                "surface_id": s.surface_id,
                "id": s.id,
                "flags": StreamFlags.TOP_DOWN,
                "codec_type": WIRE_CODEC[MJPEG],
                "stamp": int(s.started_at * 1000),
                "stream_width": r.width,
                "stream_height": r.height,
                "src_width": r.width,
                "src_height": r.height,
                "dest": r.wire(),
                "clip_type": ClipType.NONE,
            },
        )

    def frame(self, s: Stream, d: Drawable, codec: str) -> None:
        cc, pipe = self.cc, self.cc.pipe
        if self.shown.get(s.id) is not s:
            return
        if pipe.refresh is not None:  # behind a refresh: it shows the area as it is then
            pipe.absorb(s.rect)
            return
        seen = 0
        for it in reversed(pipe.items):
            if not it.live:
                continue
            seen += 1
            if seen > COVER_WINDOW:
                break
            if isinstance(it, StreamFrameItem) and it.stream is s and it is not pipe.waiting_on:
                self._drop(it)  # a newer frame of its stream replaces it
        d.hold()
        cc.note_work()
        pipe.append(StreamFrameItem(STREAM_DATA.id, s, d, codec))
        cc.drain()

    def end(self, s: Stream) -> None:
        if self.shown.get(s.id) is s:
            del self.shown[s.id]
            self.cc.send("STREAM_DESTROY", {"id": s.id})  # its unsent frames marshal to nothing

    def _drop(self, item: StreamFrameItem) -> None:
        pipe = self.cc.pipe
        pipe.discard(item)
        pipe.coalesced += 1
        item.frame.dropped(pipe.id)

    # --- the channel client's send-time hooks ---------------------------------------------
    def marshal(self, item: StreamFrameItem) -> Parts | None:
        """STREAM_DATA once the tier's payload is in; nothing for a stream that ended."""
        s, d, codec = item.stream, item.frame, item.codec
        pipe = self.cc.pipe
        if self.shown.get(s.id) is not s:
            return []
        payload = d.payload(codec)
        if payload is None:
            if d.service.failed(d, codec):
                return []
            pipe.waiting_on = item  # type: ignore[assignment]
            d.when_ready(codec, self.cc.encode_ready)
            return None
        pipe.waiting_on = None
        head, tail = encode_split(STREAM_DATA.layout, {"id": s.id, "multi_media_time": self._mm_time(), "data": payload.fields["data"]})
        return [head] if tail is None else [head, tail]

    def _mm_time(self) -> int:
        clock: Any = getattr(self.cc.host, "mm_time", None)
        now = clock() if clock is not None else 0
        return ((now + PLAY_AHEAD_MS) & 0xFFFFFFFF) or 1  # 0 means "no time" to spice-gtk

    def sent(self, item: StreamFrameItem) -> None:
        """Written: the client now holds the stream's area lossy until the upgrade."""
        self.frames_sent += 1
        item.frame.release()
        self.cc.lossy.add(item.stream.rect)
        self.cc.render.lossy_sent()

    def dropped(self, item: StreamFrameItem) -> None:
        item.frame.dropped(self.cc.pipe.id)

    def close(self) -> None:
        """The client is gone: let go of every frame its pipe still holds."""
        for it in list(self.cc.pipe):
            if isinstance(it, StreamFrameItem):
                self._drop(it)
        self.shown.clear()
