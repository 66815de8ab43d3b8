"""The payload service: every drawable's encoded images, owned in one place.

Per (drawable, codec) it keeps the one `Payload` once encoded, the pipes waiting
for it, whether the encode failed, and the per-client message prefixes built from
it; per drawable, which pipes dropped it unsent (what a shared GLZ dictionary must
know: see docs/architecture.md). A drawable itself only holds its pixels and its
reference count; when the last holder lets it go, its entry here goes too.

Encodes go to a lane by codec: the stateless ones (bitmap, LZ4, JPEG, QUIC, LZ) to
the parallel `CodecPool`, a dictionary codec (GLZ, `codecs.ORDERED_CODECS`) to the
one `OrderedLane`, whose encodes start and complete in commit order, and each stateful
video tier's frames to an `OrderedLane` of that tier's own. A payload that
serves two codecs (lz_plt's LZ_RGB32 image of a many-coloured picture is lz's too) is
kept under both, and an encode another codec's payload makes cheaper takes that path
(`codecs.shortcut`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import codecs
from ..codecs.video import STATEFUL as STATEFUL_VIDEO
from .codec_pool import CodecPool, OrderedLane

if TYPE_CHECKING:
    from .counters import RenderCounters
    from .drawable import Drawable

Parts = list[bytes]
# A payload larger than this is cut into pieces of this size once, shared by every pipe:
# a channel writes a large message a piece at a time, and Twisted's TCP transport takes
# only bytes (a slice of a bytes object, or bytes() of a memoryview, would be a copy per client).
PIECE_BYTES = 256 * 1024


class _Entry:
    __slots__ = ("payloads", "failed", "waiters", "dropped_by", "prefixes", "pieces")

    def __init__(self) -> None:
        self.payloads: dict[str, codecs.Payload] = {}
        self.failed: set[str] = set()  # codecs whose encode raised: pipes drop this drawable
        self.waiters: dict[str, list[Callable[[], None]]] = {}  # codecs being encoded, and who waits
        self.dropped_by: set[int] = set()  # ids of the pipes that dropped it unsent
        self.prefixes: dict[tuple[Any, ...], Parts] = {}  # marshalled per-client parts, by their values
        self.pieces: dict[str, Parts] = {}  # each codec's payload bytes as the pieces every pipe writes


class PayloadService:
    def __init__(self, reactor: Any, counters: RenderCounters, threads_max: int = 2) -> None:
        self.pool = CodecPool(reactor, counters, threads_max)
        self.ordered = OrderedLane(reactor, counters)
        # A stateful video tier's frames (vp8, vp8_low, ...): in order, in a lane of that
        # tier's own, so a video encode (tens of ms) never holds up the GLZ images, nor one
        # tier's encodes the other's (a stream's full and low tiers encode in parallel).
        self.video: dict[str, OrderedLane] = {}
        self._reactor, self._counters = reactor, counters
        self.started = False
        self._entries: dict[int, _Entry] = {}

    def start(self) -> None:
        self.started = True
        for lane in self._lanes():
            lane.start()

    def stop(self) -> None:
        self.started = False
        for lane in self._lanes():
            lane.stop()

    def _lanes(self) -> list[CodecPool]:
        return [self.pool, self.ordered, *self.video.values()]

    def video_lane(self, tier: str) -> OrderedLane:
        """The tier's lane, made (and started with the service) when first asked for: at
        most one a stateful tier (codecs.video.STATEFUL), a thread each."""
        lane = self.video.get(tier)
        if lane is None:
            lane = self.video[tier] = OrderedLane(self._reactor, self._counters, name=f"spice-video-{tier}")
            if self.started:
                lane.start()
        return lane

    def __len__(self) -> int:
        """Drawables with an entry (bounded by the drawables some pipe holds)."""
        return len(self._entries)

    def _entry(self, d: Drawable) -> _Entry:
        e = self._entries.get(d.id)
        if e is None:
            e = self._entries[d.id] = _Entry()
        return e

    # --- what pipes ask ----------------------------------------------------------------
    def payload(self, d: Drawable, codec: str) -> codecs.Payload | None:
        e = self._entries.get(d.id)
        return e.payloads.get(codec) if e is not None else None

    def failed(self, d: Drawable, codec: str) -> bool:
        if d.pixels is None:
            return True
        e = self._entries.get(d.id)
        return e is not None and codec in e.failed

    def nbytes(self, d: Drawable, codec: str) -> int:
        """What `d` costs a pipe that uses `codec`: its payload once encoded, else raw pixels."""
        p = self.payload(d, codec)
        return p.nbytes if p is not None else d.rect.area * 4

    def request(
        self, d: Drawable, codec: str, job: Callable[[], codecs.Payload] | None = None, then: Callable[[], None] | None = None
    ) -> None:
        """Start this codec's encode unless it is done, running or impossible. `job`
        replaces `codecs.encode(codec, pixels)` (a GLZ generation's encode, whose payload
        key names the generation); `then` runs on the reactor once it is done."""
        if d.pixels is None:
            return  # nobody holds it any more: nothing to encode (`failed` says so)
        e = self._entry(d)
        if codec in e.payloads or codec in e.failed or codec in e.waiters:
            return
        if job is None and codec not in codecs.ENCODERS:
            e.failed.add(codec)  # a dictionary image is encoded only when its group commits it
            return
        e.waiters[codec] = []
        ordered = codec in codecs.ORDERED_CODECS or job is not None
        lane = self.video_lane(codec) if codec in STATEFUL_VIDEO else self.ordered if ordered else self.pool
        encode = job if ordered else codecs.shortcut(codec, d.pixels, e.payloads)
        lane.submit(d, codec, d.pixels, lambda payload: self._encoded(d, codec, payload, then), encode=encode)

    def put(self, d: Drawable, codec: str, payload: codecs.Payload) -> None:
        """A payload made alongside another (a GLZ image's ZLIB-GLZ form)."""
        if d.pixels is not None:  # still held by some pipe
            self._entry(d).payloads[codec] = payload

    def when_ready(self, d: Drawable, codec: str, callback: Callable[[], None]) -> None:
        """Call back once the codec's payload (or its failure) is in; requests it if needed."""
        self.request(d, codec)
        e = self._entries.get(d.id)
        waiters = e.waiters.get(codec) if e is not None else None
        if waiters is None:
            callback()
        else:
            waiters.append(callback)

    def _encoded(self, d: Drawable, codec: str, payload: codecs.Payload | None, then: Callable[[], None] | None = None) -> None:
        e = self._entries.get(d.id)
        if e is None:
            return  # every holder let it go meanwhile: nobody waits
        if then is not None and payload is not None:
            then()
        if payload is None:
            e.failed.add(codec)
        elif d.pixels is not None:  # still held by some pipe
            e.payloads[codec] = payload
            if payload.codec != codec and payload.codec in codecs.ENCODERS:
                e.payloads.setdefault(payload.codec, payload)  # (lz_plt's LZ_RGB image is lz's too)
        for cb in e.waiters.pop(codec, []):
            cb()

    def prefix(self, d: Drawable, key: tuple[Any, ...], build: Callable[[], Parts]) -> Parts:
        """The marshalled per-client parts of `d` for `key`, built once per distinct value."""
        prefixes = self._entry(d).prefixes
        parts = prefixes.get(key)
        if parts is None:
            parts = prefixes[key] = build()
        return parts

    def pieces(self, d: Drawable, codec: str, data: Any) -> Parts:
        """`data` (a codec's payload buffer) as bytes pieces of at most PIECE_BYTES, made
        once per (drawable, codec) and written by every pipe as they are."""
        e = self._entry(d)
        pieces = e.pieces.get(codec)
        if pieces is None:
            if isinstance(data, bytes) and len(data) <= PIECE_BYTES:
                pieces = [data]
            else:
                view = memoryview(data).cast("B")
                pieces = [bytes(view[i : i + PIECE_BYTES]) for i in range(0, len(view), PIECE_BYTES)] or [b""]
            e.pieces[codec] = pieces
        return pieces

    # --- drops and lifetime ------------------------------------------------------------
    def dropped(self, d: Drawable, pipe_id: int) -> None:
        """Pipe `pipe_id` will never send `d`."""
        self._entry(d).dropped_by.add(pipe_id)

    def dropped_by(self, d: Drawable) -> frozenset[int]:
        e = self._entries.get(d.id)
        return frozenset(e.dropped_by) if e is not None else frozenset()

    def forget(self, d: Drawable) -> None:
        """The last holder let `d` go: its payloads and prefixes go with it."""
        self._entries.pop(d.id, None)
