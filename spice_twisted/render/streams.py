"""Video streams: an area redrawn at a steady rate becomes a SPICE stream, encoded once per tier.

Detection runs on what every frame commits (the simplified damage): a rect of at least
`MIN_AREA` pixels committed `DETECT_UPDATES` times within `DETECT_WINDOW` seconds (8
updates a second or more) whose pixels are photo-like (codecs.classify) starts a
stream over that rect. From then on damage inside the rect is not sent as images:
each frame that touched it makes one frame `Drawable` of the whole rect, encoded once
per tier some client is on (codecs/video.py, on the codec pool) and handed to every
display client that plays streams; the rest of the damage goes on as drawables.
Clients that play no streams get the frame as an ordinary drawable.

A stream ends when its rect saw no damage for `END_AFTER` seconds, when a steady rect
overlapping it appears (the video moved or changed size), or when the surface is
replaced. Every client that played it holds the area lossy (channels/display_streams.py
adds it to the client's lossy region as each frame is written), so the render service's
lossless upgrade sends the area exact once it is quiet: every client converges.

A client that joins while a stream plays gets STREAM_CREATE at once and the newest
frame (every MJPEG frame is a key frame); in a stateful codec (VP8, VP9, H.264: one
encoder per stream and codec, codecs/video.py) the next frame, made a key frame for
everyone on that codec.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..codecs import classify
from ..codecs.video import RATE_DIVISOR, STATEFUL, stateful_encoder
from .drawable import Drawable
from .rect import Rect
from .region import Region

if TYPE_CHECKING:
    from .payloads import PayloadService
    from .surface import Surface


class StreamHost(Protocol):
    """What stream detection needs of the render service (not the service itself: the
    service imports this module)."""

    reactor: Any
    sinks: list[Any]
    primary: Surface
    generation: int
    payloads: PayloadService

    def snapshot(self, rect: Rect) -> Drawable: ...


DETECT_WINDOW = 0.5  # seconds of history detection looks at
DETECT_UPDATES = 4  # commits of the same rect within DETECT_WINDOW: >= 8 updates a second
MIN_AREA = 128 * 96  # smaller areas (a clock, a spinner, a cursor trail) stay images
END_AFTER = 0.5  # seconds without damage that end a stream
MAX_STREAMS = 8  # at once; ids are below 64 (spice-gtk's table)
MAX_CANDIDATES = 64  # rects whose history detection keeps (bounded memory)
# STREAM_CLIP: over the last CLIP_FRAMES frames, the part of a stream's rect no frame's
# damage touched is something opaque over the video (a window): clients stop drawing
# frames there and get it as images, exact. Only when that part is over CLIP_STATIC of the
# rect; the clip is at most CLIP_RECTS rects.
CLIP_FRAMES = 8
CLIP_STATIC = 0.1
CLIP_RECTS = 8
# What moved in a frame is its damage where the pixels really changed, by CLIP_TILE-pixel
# tiles against the previous frame: a source may damage more than it changed (X11's
# damage of a window covered in part is its whole rect).
CLIP_TILE = 8
FPS_WEIGHT = 0.2  # of the newest gap between frames in a stream's smoothed frame rate
# --streaming-video, as QEMU's -spice streaming-video: filter (steady and photo-like),
# all (steady, whatever the content), off.
MODES = ("filter", "all", "off")


@dataclass(eq=False)
class Stream:
    """One stream of the primary surface: its id on the wire, its rect, its newest frame."""

    id: int
    surface_id: int
    generation: int
    rect: Rect
    started_at: float
    last_damage: float
    frames: int = 0  # frames made (the low tier takes every RATE_DIVISOR-th)
    last: Drawable | None = None  # the newest frame, held for clients that join
    ended: bool = False
    encoders: dict[str, Any] = field(default_factory=dict)  # each stateful codec's encoder (VP8, VP9, H.264)
    key_due: set[str] = field(default_factory=set)  # stateful codecs whose next frame must be a key frame
    clip: list[Rect] | None = None  # where clients draw its frames (None: all of rect)
    changed: deque[Region] = field(default_factory=lambda: deque(maxlen=CLIP_FRAMES))  # damage in it, per frame
    fps: float = 0.0  # frames made a second, smoothed: a tier's bit rate is its frame bytes x fps / its divisor
    last_frame_at: float | None = None
    frame_bytes: dict[str, int] = field(default_factory=dict)  # each tier's newest frame size as sent (bytes)

    @property
    def clip_region(self) -> Region:
        return Region(self.rect) if self.clip is None else Region.from_rects(self.clip)

    def need_key(self, codec: str) -> None:
        """A client joined this stateful codec, or skipped frames: the next frame is a key frame."""
        self.key_due.add(codec)


class StreamPlayer(Protocol):
    """A display client's stream side, its `streams` attribute (channels/display_streams.py).
    A sink without one plays no streams: it gets each frame as an ordinary drawable."""

    def tier(self, stream: Stream) -> str | None:
        """The tier codec this client gets `stream` in, or None: it plays no streams."""
        ...

    def start(self, stream: Stream) -> None: ...
    def frame(self, stream: Stream, frame: Drawable, codec: str, key: bool) -> None: ...
    def end(self, stream: Stream) -> None: ...
    def clip(self, stream: Stream) -> None: ...


@dataclass
class StreamCounters:
    started: int = 0
    ended: int = 0
    frames: int = 0  # frame drawables made (each encoded once per tier in use)
    tiers: dict[str, int] = field(default_factory=dict)  # frames handed to clients, by tier


def _player(sink: Any) -> StreamPlayer | None:
    return getattr(sink, "streams", None)


class Streams:
    def __init__(self, service: StreamHost) -> None:
        self.service = service
        self.reactor = service.reactor
        self.enabled = True
        self.mode = "filter"
        self.active: dict[int, Stream] = {}
        self.counters = StreamCounters()
        self._seen: dict[Rect, deque[float]] = {}
        self._ids = itertools.cycle(range(64))
        self._end_call: Any = None

    # --- from the render service's commit ----------------------------------------------
    def commit(self, rects: list[Rect], taking: Sequence[Any], behind: Sequence[Any], damage: Region | None = None) -> list[Rect]:
        """Detect streams in this frame's rects and send the frames of the active ones;
        returns the rects still to send as drawables. `damage`: the exact damage the rects
        were simplified from (what moved inside a stream, for its clip)."""
        if not self.enabled:
            return rects
        now = self.reactor.seconds()
        self._detect(rects, now)
        if not self.active:
            return rects
        out: list[Rect] = []
        inside: dict[Stream, Region] = {}  # each stream's damage this frame
        for r in rects:
            hit = [s for s in self.active.values() if not s.rect.intersect(r).empty()]
            if not hit:
                out.append(r)
                continue
            rest = Region(r)
            for s in hit:
                part = r.intersect(s.rect)
                inside.setdefault(s, Region()).add(part)
                rest = rest.subtract(s.rect)
                if s.clip is not None:  # clients draw no frame outside the clip: images there
                    out.extend(Region(part).subtract(s.clip_region).rects())
            out.extend(rest.rects())
        for s, region in inside.items():
            if damage is not None:
                region = damage.intersect(s.rect)  # exact: the rects may cover more
            if s.clip is None or region.intersects(s.clip_region):
                s.last_damage = now
                changed = self._frame(s, taking, behind)
                if changed is not None:
                    region = region.intersect(changed)
            s.changed.append(region)
            self._update_clip(s, taking)
        return out

    def _update_clip(self, s: Stream, taking: Sequence[Any]) -> None:
        """Clip out what stayed still over the last CLIP_FRAMES frames (a window over the
        video), and send it to the clients that play the stream as images, exact."""
        if len(s.changed) < CLIP_FRAMES:
            return
        moving = Region()
        for region in s.changed:
            moving.add(region)
        static = Region(s.rect).subtract(moving)
        if static.area <= CLIP_STATIC * s.rect.area:
            want = None
        else:  # exact where it can be: a merged rect would take in some of what is over the video
            rects = moving.rects()
            want = sorted(rects if len(rects) <= CLIP_RECTS else moving.simplify(CLIP_RECTS))
        if want == s.clip:
            return
        s.clip = want
        players = [(sink, p) for sink in self.service.sinks if (p := _player(sink)) is not None and p.tier(s) is not None]
        for _, player in players:
            player.clip(s)
        if want is None:
            return
        for r in Region(s.rect).subtract(s.clip_region).simplify(CLIP_RECTS):
            d = self.service.snapshot(r)
            for sink, _ in players:
                if sink in taking:
                    if d.solid_colour() is None:
                        d.request(sink.lossless_codec_for(d))
                    sink.push_lossless(d)

    def _detect(self, rects: list[Rect], now: float) -> None:
        seen = self._seen
        horizon = now - DETECT_WINDOW
        for r in rects:
            if r.area < MIN_AREA or any(s.rect.contains(r) for s in self.active.values()):
                continue
            times = seen.get(r)
            if times is None:
                if len(seen) >= MAX_CANDIDATES:
                    continue
                times = seen[r] = deque(maxlen=DETECT_UPDATES)
            times.append(now)
            if len(times) >= DETECT_UPDATES and times[0] >= horizon and len(self.active) < MAX_STREAMS:
                surface = self.service.primary
                if self.mode == "all" or classify.lossy_pays(surface.crop(r)):
                    del seen[r]
                    self._start(r, now)
        for r in [r for r, t in seen.items() if t[-1] < horizon]:
            del seen[r]

    def _start(self, rect: Rect, now: float) -> None:
        for s in [s for s in self.active.values() if not s.rect.intersect(rect).empty()]:
            self.end(s)  # the video moved or changed size: its old stream goes
        used = set(self.active)
        sid = next(i for i in self._ids if i not in used)
        surface = self.service.primary
        s = Stream(sid, surface.id, self.service.generation, rect, now, now)
        self.active[sid] = s
        self.counters.started += 1
        for sink in list(self.service.sinks):
            player = _player(sink)
            if player is not None and player.tier(s) is not None:
                player.start(s)
        self._schedule_end()

    def _frame(self, s: Stream, taking: Sequence[Any], behind: Sequence[Any]) -> Region | None:
        """Make and hand out one frame; returns the tiles whose pixels changed since the
        last frame (None for the first)."""
        service = self.service
        d = Drawable(s.surface_id, s.generation, s.rect, service.primary.crop(s.rect), service.payloads)
        d.hold()  # the stream's own reference: the newest frame, for clients that join
        changed = None
        if s.last is not None:
            if s.last.pixels is not None and d.pixels is not None:
                changed = changed_tiles(s.last.pixels, d.pixels, s.rect)
            s.last.release()
        s.last = d
        s.frames += 1
        self._time_frame(s)
        self.counters.frames += 1
        for sink in behind:
            sink.absorb(s.rect)
        keys: dict[str, bool] = {}  # the tiers requested for this frame, and which are key frames
        for sink in taking:
            player = _player(sink)
            tier = player.tier(s) if player is not None else None
            if tier is None:  # plays no streams: the frame is an ordinary (photo-like) image for it
                sink.request_payload(d, sink.codecs_now()[1])
                sink.push_drawable(d)
            elif (s.frames - 1) % RATE_DIVISOR.get(tier, 1) == 0:
                if tier not in keys:
                    keys[tier] = self._request(s, d, tier)  # once per tier, whoever asks first
                self.counters.tiers[tier] = self.counters.tiers.get(tier, 0) + 1
                player.frame(s, d, tier, keys[tier])
        return changed

    def _time_frame(self, s: Stream) -> None:
        """The stream's frame rate: a moving average of the gaps between its frames."""
        now = self.reactor.seconds()
        if s.last_frame_at is not None and now > s.last_frame_at:
            rate = 1.0 / (now - s.last_frame_at)
            s.fps = rate if not s.fps else (1 - FPS_WEIGHT) * s.fps + FPS_WEIGHT * rate
        s.last_frame_at = now

    def _request(self, s: Stream, d: Drawable, tier: str) -> bool:
        """Start the tier's encode of frame `d`; whether it is a key frame (a stateful codec's
        frames are encoded in order by the stream's own encoder, in the ordered lane)."""
        if tier not in STATEFUL:
            d.request(tier)
            return True  # every MJPEG frame stands alone
        enc = s.encoders.get(tier)
        if enc is None:
            enc = s.encoders[tier] = stateful_encoder(tier, s.rect.width, s.rect.height)
        key = tier in s.key_due or enc.frames == 0
        s.key_due.discard(tier)
        pixels = d.pixels
        assert pixels is not None
        self.service.payloads.request(d, tier, job=lambda: enc.encode(pixels, key))
        return key

    # --- clients that join; the end of streams --------------------------------------------
    def joined(self, sink: Any) -> None:
        """A display client started: every active stream at once, with its newest frame."""
        player = _player(sink)
        if player is None:
            return
        for s in list(self.active.values()):
            tier = player.tier(s)
            if tier is None:
                continue
            player.start(s)
            if tier in STATEFUL:
                s.need_key(tier)  # its first frame: the next one, a key frame for everyone on it
            elif s.last is not None and s.last.pixels is not None:
                s.last.request(tier)
                player.frame(s, s.last, tier, True)

    def end(self, s: Stream) -> None:
        if s.ended:
            return
        s.ended = True
        self.active.pop(s.id, None)
        self.counters.ended += 1
        for sink in list(self.service.sinks):
            player = _player(sink)
            if player is not None:
                player.end(s)
        if s.last is not None:
            s.last.release()
            s.last = None

    def reset(self) -> None:
        """The surface is replaced: every stream ends (before the clients' SURFACE_DESTROY)."""
        for s in list(self.active.values()):
            self.end(s)
        self._seen.clear()

    def set_mode(self, mode: str) -> None:
        """--streaming-video; off ends the streams playing now."""
        if mode not in MODES:
            raise ValueError(f"streaming-video {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        self.enabled = mode != "off"
        if not self.enabled:
            self.reset()

    def _schedule_end(self) -> None:
        if self._end_call is None and self.active:
            self._end_call = self.reactor.callLater(END_AFTER, self._end_quiet)

    def _end_quiet(self) -> None:
        self._end_call = None
        now = self.reactor.seconds()
        for s in list(self.active.values()):
            if now - s.last_damage >= END_AFTER:
                self.end(s)
        self._schedule_end()

    def stop(self) -> None:
        if self._end_call is not None and self._end_call.active():
            self._end_call.cancel()
        self._end_call = None


def changed_tiles(old: np.ndarray, new: np.ndarray, rect: Rect, tile: int = CLIP_TILE) -> Region:
    """The CLIP_TILE-pixel tiles of `rect` (its top-left the grid's origin) where `new`
    differs from `old` (two frames of it)."""
    h, w = new.shape[:2]
    diff = (old.view(np.uint32) != new.view(np.uint32))[..., 0]  # one compare a pixel
    diff = np.pad(diff, ((0, -h % tile), (0, -w % tile)))
    grid = diff.reshape(diff.shape[0] // tile, tile, diff.shape[1] // tile, tile).any(axis=(1, 3))
    rects = []
    for row, line in enumerate(grid):
        edges = np.flatnonzero(np.diff(np.concatenate(([False], line, [False])).astype(np.int8)))
        top = rect.top + row * tile
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            rects.append(Rect(rect.left + int(a) * tile, top, min(rect.right, rect.left + int(b) * tile), min(rect.bottom, top + tile)))
    return Region.from_rects(rects)
