"""One display client's side of the video streams (render/streams.py): its tier, its frames.

The render service hands a client each frame `Drawable` of a stream with the tier codec
it gets; the client's pipe holds it as a `StreamFrameItem` and at send time marshals a
STREAM_DATA: a 12-byte head of its own (the frame's multimedia time is this client's)
and the tier's one shared MJPEG payload, never copied per client. A newer frame drops
the older unsent ones of its stream, so a slow client skips frames instead of queueing
them, and a pipe behind a refresh takes only the area (the refresh shows it).

Which codec: the first of `--video-codecs` (DisplaySettings.video_codecs) the client
decodes, in the order of its PREFERRED_VIDEO_CODEC_TYPE when it sent one (the server's
list ranked by the client's; codecs it did not name after those it did, in the server's
order); MJPEG needs CODEC_MJPEG, the others MULTI_CODEC and their own cap (CODEC_VP8,
CODEC_VP9, CODEC_H264), H.264 a stream of even width and height. A stream keeps its codec
on a client for its life. VP8, VP9 and H.264 frames refer to earlier ones: none is
dropped, a client that joins waits for the key frame the streams ask for, and one that
falls behind (its pipe behind a refresh) waits for another.

A client that advertises STREAM_REPORT is asked for reports on each stream
(STREAM_ACTIVATE_REPORT). A report of late or dropped frames puts it on the low tier for
a while; a report that it cannot decode the stream (no frames, 0xffffffff drops) ends the
stream on it and it gets the area as images from then on.

Each frame's multimedia time is the server's clock (the one the main channel's INIT gave
the client) plus this client's play-ahead: its link's round trip at first, then what its
reports say its frames need to come a margin before their time (AHEAD_* below).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..client_signatures import links_as_spice_html5
from ..codecs.video import (
    FAMILY,
    H264,
    MJPEG,
    MJPEG_LOW,
    MJPEG_MIN,
    RATE_DIVISOR,
    STATEFUL,
    STATEFUL_ENCODERS,
    STATEFUL_LOW,
    VP8,
    VP9,
    WIRE_CODEC,
)
from ..wire.enums import ChannelType, ClipType, DisplayCap, StreamFlags, VideoCodecType
from ..wire.messages import message
from ..wire.schema import encode_split
from .pipe import PipeItem

if TYPE_CHECKING:
    from ..render.drawable import Drawable
    from ..render.streams import Stream
    from .base import Parts


class StreamPlayerHost(Protocol):
    """What a client's stream player needs of its display channel (not the channel
    itself: it imports this module)."""

    client: Any
    connected: bool
    host: Any
    log: Any
    lossy: Any
    pipe: Any
    render: Any
    request: Any
    settings: Any

    def encode_ready(self) -> None: ...
    def note_work(self) -> None: ...
    def pipe_bytes(self) -> int: ...
    def send(self, name: str, fields: dict[str, Any] | None = None) -> None: ...


STREAM_DATA = message(ChannelType.DISPLAY, "STREAM_DATA")
# Each client's frames are stamped ahead of the server's multimedia clock (the one its main
# channel's INIT set the client's clock to, which so lags ours by INIT's one-way trip):
# spice-gtk drops a frame whose time has passed when it arrives and holds the others until
# their time. Too little and frames that queued on the way are dropped; too much and the
# video plays late. Before any report: the link's round trip (the one-way trip the clock
# lag does not cover, and as much again for a frame's own bytes and what is queued) plus
# AHEAD_MARGIN_MS; no round trip measured yet: AHEAD_DEFAULT_MS. Each STREAM_REPORT says
# how early its last frame came (last_frame_delay): the play-ahead then moves so that
# frames come AHEAD_MARGIN_MS early, up at once (late frames are lost), down by half the
# excess (one quick report is not the link).
AHEAD_DEFAULT_MS = 100
AHEAD_MARGIN_MS = 30
AHEAD_MIN_MS, AHEAD_MAX_MS = 10, 500
# A client whose pipe holds more than this many bytes when a frame comes is behind: it
# gets the low tier (half the frames, lower quality) until its pipe drains.
LOW_TIER_BACKLOG = 1 << 20
# A WAN client goes down to the least tier (a quarter of the frames) when the low tier's bit
# rate would take more than LEAST_SHARE of its link's bandwidth (the link estimate), and
# back up when it would take less than LEAST_BACK (a margin: no flapping between the two).
# Before the low tier's frames were measured, LOW_OF_FULL of the full tier's frame bytes.
LEAST_SHARE, LEAST_BACK = 0.75, 0.5
LOW_OF_FULL = 0.66  # the low tier's frame bytes / the full tier's (docs/codecs.md's table)
# A VP8, VP9 or H.264 stream's frames in one pipe at most (none may be dropped alone: past
# this many, all go and the client waits for a key frame). An MJPEG stream has at most its
# newest one.
MAX_QUEUED_STATEFUL = 8
# STREAM_ACTIVATE_REPORT: a report every this many frames, or this often.
REPORT_FRAMES, REPORT_TIMEOUT_MS = 20, 1000
# A report of late frames keeps the client on the low tier this long.
LATE_HOLD = 5.0
LATE_MS = 50  # a last frame later than this, or over a tenth of the frames dropped, is "late"
CANNOT_DECODE = 0xFFFFFFFF
# The caps a client advertises for each codec (MJPEG's alone: spice-html5 sends no MULTI_CODEC).
CODEC_CAPS: dict[str, frozenset[DisplayCap]] = {
    MJPEG: frozenset({DisplayCap.CODEC_MJPEG}),
    VP8: frozenset({DisplayCap.MULTI_CODEC, DisplayCap.CODEC_VP8}),
    VP9: frozenset({DisplayCap.MULTI_CODEC, DisplayCap.CODEC_VP9}),
    H264: frozenset({DisplayCap.MULTI_CODEC, DisplayCap.CODEC_H264}),
}
# PREFERRED_VIDEO_CODEC_TYPE's numbers (spice-protocol's VideoCodecType) for our codecs.
BY_WIRE_TYPE: dict[int, str] = {VideoCodecType.MJPEG: MJPEG, VideoCodecType.VP8: VP8, VideoCodecType.VP9: VP9, VideoCodecType.H264: H264}
_report_ids = itertools.count(1)


def _clip_fields(s: Stream) -> dict[str, Any]:
    if s.clip is None:
        return {"clip_type": ClipType.NONE}
    return {"clip_type": ClipType.RECTS, "clip_rects": [r.wire() for r in s.clip]}


def _family(codec: str) -> str:
    """The stream codec of a tier (both MJPEG tiers are MJPEG on the wire)."""
    return FAMILY.get(codec, codec)


def _low_tier_bps(s: Stream) -> float | None:
    """The low tier's bit rate on stream `s` now (None: not known yet)."""
    nbytes: float | None = s.frame_bytes.get(MJPEG_LOW)
    if nbytes is None and MJPEG in s.frame_bytes:
        nbytes = s.frame_bytes[MJPEG] * LOW_OF_FULL
    if nbytes is None or not s.fps:
        return None
    return nbytes * 8 * s.fps / RATE_DIVISOR[MJPEG_LOW]


class StreamFrameItem(PipeItem):
    """A pipe's reference to one shared stream frame, in one tier's codec."""

    __slots__ = ("stream", "frame", "codec")

    def __init__(self, msg_type: int, stream: Stream, frame: Drawable, codec: str) -> None:
        self.msg_type, self.data, self.live = msg_type, b"", True
        self.nbytes = frame.nbytes(codec)
        self.stream, self.frame, self.codec = stream, frame, codec


class ClientStreams:
    """The streams one display client plays (the render service's StreamPlayer)."""

    def __init__(self, cc: StreamPlayerHost) -> None:
        self.cc = cc
        self.shown: dict[int, Stream] = {}  # streams created on the client, by id
        self.frames_sent = 0
        self.low = False  # on the low tier, or the least
        self.least = False  # on the least tier
        self.codecs: dict[int, str] = {}  # each shown stream's codec (MJPEG tiers: MJPEG)
        self.awaiting_key: set[int] = set()  # stateful codecs' streams it can only take a key frame of now
        self.queued: dict[int, list[StreamFrameItem]] = {}  # each stream's frames in the pipe (some sent)
        self.report_ids: dict[int, int] = {}  # stream id -> the unique id its reports must carry
        self.undecodable: set[str] = set()  # codecs the client reported it cannot decode
        self.late_until = 0.0  # its reports said frames came late: low tier until then
        self.reports = 0
        self.ahead_ms: int | None = None  # the play-ahead its reports set (None: from the round trip)
        self.last_frame_delay: int | None = None  # how early its last reported frame came (ms)
        self.preferred: tuple[str, ...] | None = None  # its PREFERRED_VIDEO_CODEC_TYPE, our codecs in its order
        self.last_stamp: dict[int, int] = {}  # a stateful stream's last multimedia time sent (unwrapped)
        self.tiers: dict[int, str] = {}  # a stateful stream's tier of the last frame it was given
        self.clipped_out: dict[int, Stream] = {}  # streams it gets as images since they were clipped
        self._applies_clip: bool | None = None

    def tier_label(self) -> str:
        """ "full", "low" or "least": the tier its streams' frames last came in (the admin site's)."""
        return "least" if self.least else "low" if self.low else "full"

    def tier_codec(self, sid: int) -> str | None:
        """The tier codec (codecs/video.py) its shown stream `sid` last got frames in."""
        codec = self.codecs.get(sid)
        if codec in STATEFUL:
            return self.tiers.get(sid, codec)
        return None if codec is None else MJPEG_MIN if self.least else MJPEG_LOW if self.low else MJPEG

    def codec_order(self) -> list[str]:
        """The server's video codecs this client decodes, best first: the server's order,
        ranked by the client's preference when it sent one."""
        caps = self.cc.request.channel_caps
        allowed = [c for c in getattr(self.cc.settings, "video_codecs", (MJPEG,)) if c in CODEC_CAPS and CODEC_CAPS[c] <= caps]
        if self.preferred is not None:
            rank = {c: i for i, c in enumerate(self.preferred)}
            allowed.sort(key=lambda c: rank.get(c, len(rank)))  # stable: the rest in the server's order
        return allowed

    def _codec(self, s: Stream) -> str | None:
        """The first codec of `codec_order` it has not reported it cannot decode, and that
        fits the stream's size; None: it plays no streams."""
        w, h = s.rect.width, s.rect.height
        for codec in self.codec_order():
            if codec not in self.undecodable and (codec not in STATEFUL or STATEFUL_ENCODERS[codec].fits(w, h)):
                return codec
        return None

    def prefer(self, wire_types: list[int]) -> None:
        """PREFERRED_VIDEO_CODEC_TYPE: its codecs best first (at most 255: the schema's
        count is a byte). Numbers we do not know and repeats are ignored; streams playing
        keep their codec, the next ones follow the new order."""
        order = tuple(dict.fromkeys(BY_WIRE_TYPE[t] for t in wire_types if t in BY_WIRE_TYPE))
        if order == self.preferred:
            return  # the same again: no log line (a client may send it as often as it likes)
        self.preferred = order
        self.cc.log.info(
            "{cc}: client prefers video codecs {order}: streams in {codecs}", cc=self.cc, order=list(order), codecs=self.codec_order()
        )

    @property
    def applies_clip(self) -> bool:
        """Whether it draws a stream's frames only inside its STREAM_CLIP. spice-html5 keeps
        the clip but draws every frame whole (its display.js), so a window over a playing
        video would be painted over; it is known by its link (client_signatures.py)."""
        if self._applies_clip is None:
            main = self.cc.client.main
            if main is None:
                return True  # (not linked yet: asked again later)
            self._applies_clip = not links_as_spice_html5(main.request.channel_caps, main.request.common_caps)
        return self._applies_clip

    def _clipped_out(self, stream: Stream) -> bool:
        """A client that draws frames whole gets a stream as images once it is clipped, for
        the rest of its life: STREAM_DESTROY now, the frames as ordinary drawables after."""
        if self.clipped_out.get(stream.id) is stream:
            return True
        if stream.clip is None or self.applies_clip:
            return False
        self.clipped_out[stream.id] = stream
        self.end(stream)
        self.cc.log.info("{cc}: stream {id} clipped: sent as images (the client draws stream frames whole)", cc=self.cc, id=stream.id)
        return True

    def tier(self, stream: Stream) -> str | None:
        """The tier this client gets the stream's next frame in. MJPEG: the low tier while
        its link is judged WAN, its pipe is backed up or its reports say frames come late,
        and the least tier on a WAN too slow for the low one; every MJPEG frame stands
        alone, so it changes tier at any frame. A stateful codec: its low tier while the
        link is judged WAN or the reports say late (both hold for seconds: each move costs
        a key frame of the tier moved to, which every client on that tier gets); a
        backed-up pipe skips to a key frame instead (`frame`)."""
        if not self.cc.connected or self._clipped_out(stream):
            return None
        codec = self.codecs.get(stream.id) if self.shown.get(stream.id) is stream else self._codec(stream)
        if codec is None:
            return None
        link = self.cc.client.link
        late = time.monotonic() < self.late_until
        if codec in STATEFUL:
            self.low = late or link.is_wan
            return STATEFUL_LOW[codec] if self.low else codec
        self.low = late or link.is_wan or self.cc.pipe_bytes > LOW_TIER_BACKLOG
        if not self.low:
            self.least = False
            return MJPEG
        bps = _low_tier_bps(stream)
        if not link.is_wan or not link.bandwidth or bps is None:
            self.least = False
        else:
            self.least = bps > (LEAST_BACK if self.least else LEAST_SHARE) * link.bandwidth
        return MJPEG_MIN if self.least else MJPEG_LOW

    def start(self, s: Stream) -> None:
        codec = self._codec(s)
        if codec is None:
            return
        self.shown[s.id] = s
        self.codecs[s.id] = codec
        r = s.rect
        self.cc.send(
            "STREAM_CREATE",
            {
                "surface_id": s.surface_id,
                "id": s.id,
                "flags": StreamFlags.TOP_DOWN,
                "codec_type": WIRE_CODEC[codec],
                "stamp": int(s.started_at * 1000),
                "stream_width": r.width,
                "stream_height": r.height,
                "src_width": r.width,
                "src_height": r.height,
                "dest": r.wire(),
                **_clip_fields(s),
            },
        )
        if DisplayCap.STREAM_REPORT in self.cc.request.channel_caps:
            uid = self.report_ids[s.id] = next(_report_ids) & 0xFFFFFFFF
            fields = {"stream_id": s.id, "unique_id": uid, "max_window_size": REPORT_FRAMES, "timeout_ms": REPORT_TIMEOUT_MS}
            self.cc.send("STREAM_ACTIVATE_REPORT", fields)

    def frame(self, s: Stream, d: Drawable, codec: str, key: bool) -> None:
        pipe = self.cc.pipe
        stateful = codec in STATEFUL
        if self.shown.get(s.id) is not s:
            if s.ended:
                return
            self.start(s)  # again, in the codec it decodes after one it reported it cannot
            if self.shown.get(s.id) is not s:
                return
            if stateful and not key:
                self.awaiting_key.add(s.id)
                s.need_key(codec)
        if pipe.refresh is not None:  # behind a refresh: it shows the area as it is then
            pipe.absorb(s.rect)
            if stateful:
                self.awaiting_key.add(s.id)  # it misses this frame: only a key frame may follow
                s.need_key(codec)
            return
        queued = [it for it in self.queued.get(s.id, ()) if it.live]
        if stateful:
            if self.tiers.get(s.id, codec) != codec and not key:  # moved tier: it starts at a key frame of the new one
                self.awaiting_key.add(s.id)
                s.need_key(codec)
            self.tiers[s.id] = codec
            if len(queued) >= MAX_QUEUED_STATEFUL:  # it reads too slowly: skip, then a key frame
                queued = self._drop_queued(queued)
                self.awaiting_key.add(s.id)
                s.need_key(codec)
            if s.id in self.awaiting_key and not key:
                self.queued[s.id] = queued
                return
            self.awaiting_key.discard(s.id)
        else:
            queued = self._drop_queued(queued)  # a newer frame of its stream replaces them
        self.queued[s.id] = [*queued, self._queue(s, d, codec)]
        self.cc.render.sends.wake(self.cc)  # written in its send turn, not inside the frame

    def _drop_queued(self, queued: list[StreamFrameItem]) -> list[StreamFrameItem]:
        """Drop the unsent frames, all but the one whose encode the pipe waits for."""
        waiting = self.cc.pipe.waiting_on
        for it in queued:
            if it is not waiting:
                self._drop(it)
        return [it for it in queued if it is waiting]

    def _queue(self, s: Stream, d: Drawable, codec: str) -> StreamFrameItem:
        d.hold()
        self.cc.note_work()
        item = StreamFrameItem(STREAM_DATA.id, s, d, codec)
        self.cc.pipe.append(item)
        return item

    def end(self, s: Stream) -> None:
        """STREAM_DESTROY, and the whole rect lossy again: the client shows each frame at its
        multimedia time, inside the clip as it is then, so a frame sent before an image of
        the rect may have covered it. What it shows there is known only after the destroy
        (which drops the frames it still holds): the upgrade sends the rect exact."""
        if s.ended and self.clipped_out.get(s.id) is s:
            del self.clipped_out[s.id]
        if self.shown.get(s.id) is s:
            del self.shown[s.id]
            self.codecs.pop(s.id, None)
            self.awaiting_key.discard(s.id)
            self.report_ids.pop(s.id, None)
            self.queued.pop(s.id, None)
            self.last_stamp.pop(s.id, None)
            self.tiers.pop(s.id, None)
            self.cc.send("STREAM_DESTROY", {"id": s.id})  # its unsent frames marshal to nothing
            self.cc.lossy.add(s.rect)
            self.cc.render.lossy_sent()

    def clip(self, s: Stream) -> None:
        """The stream's clip changed: STREAM_CLIP (in the pipe's order: frames before it
        draw all they drew, frames after it only inside the clip)."""
        if self.shown.get(s.id) is s:
            self.cc.send("STREAM_CLIP", {"id": s.id, **_clip_fields(s)})

    def report(self, fields: dict[str, Any]) -> None:
        """A STREAM_REPORT. One for a stream it no longer plays, or with another unique id
        (an earlier stream of the same id), is stale: ignored."""
        sid = fields["stream_id"]
        s = self.shown.get(sid)
        if s is None or self.report_ids.get(sid) != fields["unique_id"]:
            return
        self.reports += 1
        codec = self.codecs.get(sid, MJPEG)
        if fields["num_frames"] == 0 and fields["num_drops"] == CANNOT_DECODE:
            self.cc.log.warn("{cc}: the client cannot decode {codec} streams: images instead", cc=self.cc, codec=codec)
            self.undecodable.add(codec)
            self.end(s)  # from the next frame on it gets the area as images (or another codec)
            return
        early = fields["last_frame_delay"]
        self.last_frame_delay = early
        ahead = self.play_ahead_ms()
        if early < AHEAD_MARGIN_MS:
            ahead += AHEAD_MARGIN_MS - early
        else:
            ahead -= (early - AHEAD_MARGIN_MS) // 2
        self.ahead_ms = max(AHEAD_MIN_MS, min(AHEAD_MAX_MS, ahead))
        if fields["num_drops"] * 10 > fields["num_frames"] or early < -LATE_MS:
            self.late_until = time.monotonic() + LATE_HOLD

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
        if self.shown.get(s.id) is not s or _family(codec) != self.codecs.get(s.id):
            return []  # ended, or restarted in another codec since it was queued
        payload = d.payload(codec)
        if payload is None:
            if d.service.failed(d, codec):
                return []
            pipe.waiting_on = item  # type: ignore[assignment]
            d.when_ready(codec, self.cc.encode_ready)
            return None
        pipe.waiting_on = None
        s.frame_bytes[codec] = payload.nbytes  # what a frame of this tier costs now (tier choice)
        if not payload.nbytes - 4:  # the encoder dropped this frame (rate control): nothing to send
            return []
        stamp = self._mm_time(s.id, codec)
        head, tail = encode_split(STREAM_DATA.layout, {"id": s.id, "multi_media_time": stamp, "data": payload.fields["data"]})
        return [head] if tail is None else [head, tail]

    def play_ahead_ms(self) -> int:
        """How far ahead of the multimedia clock this client's frames are stamped (ms)."""
        if self.ahead_ms is not None:
            return self.ahead_ms
        rtt = self.cc.client.link.rtt
        if rtt is None:
            return AHEAD_DEFAULT_MS
        return max(AHEAD_MIN_MS, min(AHEAD_MAX_MS, round(rtt * 1000) + AHEAD_MARGIN_MS))

    def _mm_time(self, sid: int, codec: str) -> int:
        """The clock plus the play-ahead; a stateful stream's stamps only go forward, though the
        play-ahead may shrink: its frames are one sequence a player decodes in order, and
        spice-html5 muxes them into WebM blocks whose timecodes must not go back (Chromium's
        MSE fails the whole video on one that does)."""
        clock: Any = getattr(self.cc.host, "mm_time", None)
        now = clock() if clock is not None else 0
        stamp = now + self.play_ahead_ms()
        if codec in STATEFUL:
            stamp = max(stamp, self.last_stamp.get(sid, stamp - 1) + 1)
            self.last_stamp[sid] = stamp
        return (stamp & 0xFFFFFFFF) or 1  # 0 means "no time" to spice-gtk

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
        self.codecs.clear()
        self.queued.clear()
