"""GLZ groups: one server-side GLZ dictionary shared by the clients whose history allows it.

A GLZ image may copy pixels from earlier images of a dictionary, which the client keeps
in its GLZ window; spice-gtk blocks its display channel for good waiting for an image it
was never sent, and it frees window images by slot from its own counter, so the GLZ ids
one client receives must run 0, 1, 2, ... from its connection (decode-glz.c). References
are relative (image distance = id - referenced id, pixel offsets in that image), and so
is win_head_dist; only the header's id is absolute. So the rules (DESIGN.md) become:

- A **generation** is one `GlzEncoder` with image ids from 0, and its **members**: the
  display clients that decode GLZ (a window in DISPLAY_INIT), whose setting allows GLZ,
  and whose window has never held an image. The first ones start it; a client that
  comes later **joins** it (the newest generation of its `glz_dictionary_id` whose window
  fits in its own) at the generation's next image: its `base`. It gets every image from
  there on, each with its own header: id - base, and win_head_dist at most that
  (`glz.rebased_header`; spice-gtk frees up to id - win_head_dist in 64 bits, so a
  distance past its id would wrap). Every encode references no image below the newest
  member's base (`min_ref_id`), so nobody is sent a reference to an image it lacks. That
  costs the members already there some bytes once (the images after a join cannot
  reference the window before it: docs/performance.md); it costs no encode.
  A new generation starts only for a client no generation fits (another dictionary id,
  a smaller window), at most MAX_GENERATIONS at once.
- (2) An image GLZ-encoded for one member goes to every member: at commit a drawable is
  GLZ for the generation only if every member takes GLZ for that picture, and then it is
  pinned in every member's pipe (never covered, coalesced or drawn from the pixmap cache).
- (1) An image dropped from a member's pipe is never GLZ-encoded: members always accept
  (a pipe about to collapse, reset or fail an encode leaves first), so no member drops a
  drawable at commit, and a pinned one is never dropped while the pipe is a member.
- A member that cannot keep up (its pipe reaches its bounds), changes its preference
  away from GLZ, or meets a resize **leaves**: its unsent GLZ images go out in its other
  codec instead, and it gets LZ/LZ4 for the rest of its session (its window holds ids;
  re-entering would need its own next id as a base). The others go on, unaffected.

The encodes of a generation run in the payload service's ordered lane, in commit order,
once per image for all its members (`codec` is the generation's payload key). ZLIB-GLZ
deflates the header too, so its form is made once per distinct base among the members
that take it (`zcodec_for(base)`), in the same job; plain GLZ is one payload for all,
each late joiner's 33-byte header written before the shared rest (channels/display.py).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger

from ..codecs import glz

if TYPE_CHECKING:
    from .drawable import Drawable
    from .payloads import PayloadService

PREFIX = "glz:"  # payload keys: "glz:<generation>" and "zglz:<generation>" (ZLIB-GLZ)
ZPREFIX = "zglz:"

_generations = itertools.count(1)
# Each generation's encoder holds up to its window of image pixels (4 Mpixels: 16 MiB);
# past this many at once, a newcomer gets LZ/LZ4 instead of a generation of its own.
MAX_GENERATIONS = 4


class GlzSink(Protocol):
    """A display client as a GLZ group sees it."""

    glz: GlzGeneration | None  # the generation it is a member of
    glz_used: bool  # its window has held (or been promised) images of some generation

    def glz_candidate(self) -> tuple[int, int] | None: ...  # (dictionary id, window) while it could join
    def glz_takes(self, drawable: Drawable) -> bool: ...  # GLZ for this picture, were it a member
    def glz_wants_zlib(self) -> bool: ...


class GlzGeneration:
    def __init__(self, payloads: PayloadService, dictionary_id: int, window_pixels: int, members: list[GlzSink]) -> None:
        self.number = next(_generations)
        self.codec = f"{PREFIX}{self.number}"
        self.zcodec = f"{ZPREFIX}{self.number}"
        self.payloads = payloads
        self.dictionary_id = dictionary_id
        self.window_pixels = window_pixels
        self.encoder = glz.GlzEncoder(window_pixels)
        self.members: list[GlzSink] = []
        self.base: dict[GlzSink, int] = {}  # member -> the generation's id of its image 0
        self.next_id = 0
        self.images = 0  # encodes submitted: once per image, for all members
        self.joined = 0  # members that joined after the generation's first image
        self.left = 0  # members that left
        for m in members:
            self.join(m)

    def __repr__(self) -> str:
        return f"<GLZ generation {self.number}: {len(self.members)} members, {self.next_id} images>"

    def join(self, sink: GlzSink) -> None:
        """`sink` gets every image of the generation from the next one on, as its ids 0, 1, ..."""
        self.members.append(sink)
        self.base[sink] = self.next_id
        if self.next_id:
            self.joined += 1

    def remove(self, sink: GlzSink) -> None:
        self.members.remove(sink)
        self.base.pop(sink, None)

    def zcodec_for(self, base: int) -> str:
        """The payload key of the ZLIB-GLZ form for the members whose image 0 is `base`."""
        return self.zcodec if base == 0 else f"{self.zcodec}@{base}"

    def submit(self, d: Drawable) -> None:
        """Encode `d` as this generation's next image (in the ordered lane), and its
        ZLIB-GLZ form too where some member would take that: one deflate per distinct
        `base` among those members (the header, rebased per base, is deflated too)."""
        assert d.pixels is not None
        image_id, pixels, encoder = self.next_id, d.pixels, self.encoder
        self.next_id += 1
        self.images += 1
        # The encode references no image some member was not sent: none below the newest
        # member's first image.
        min_ref = max(self.base[m] for m in self.members)
        zbases = sorted({self.base[m] for m in self.members if m.glz_wants_zlib()})
        extra: dict[str, Any] = {}

        def job() -> Any:
            payload = encoder.encode(pixels, image_id, min_ref)
            for base in zbases:
                extra[self.zcodec_for(base)] = glz.zlib_glz(glz.rebased(payload, base))
            return payload

        def then() -> None:
            for key, z in extra.items():
                if z is not None:
                    self.payloads.put(d, key, z)

        self.payloads.request(d, self.codec, job=job, then=then)


class GlzGroups:
    """Every GLZ generation of one render service, and who is in which."""

    log = Logger()

    def __init__(self, payloads: PayloadService) -> None:
        self.payloads = payloads
        self.generations: list[GlzGeneration] = []
        self.started = 0
        self.refused = 0  # clients that found MAX_GENERATIONS running
        self.departures: dict[str, int] = {}

    def assign(self, d: Drawable, sinks: list[Any]) -> dict[Any, str]:
        """At commit, before any pipe takes `d`: the sinks that get it as GLZ, each with the
        payload key to send. Starts a generation for the clients that may begin one."""
        self._start_generations(sinks)
        out: dict[Any, str] = {}
        if d.solid_colour() is not None:
            return out
        taking = set(sinks)  # (a list's `in` per member made this quadratic in the clients)
        dropped = d.dropped_by
        for gen in list(self.generations):
            for m in [m for m in gen.members if m not in taking]:
                m.leave_glz("it fell behind")  # (its pipe leaves before it collapses; a safety net)
            members = gen.members
            if dropped and any(m.pipe.id in dropped for m in members):
                continue  # rule (1); cannot happen at commit (no pipe has seen `d`), kept as a guard
            if members and all(m.glz_takes(d) for m in members):
                gen.submit(d)
                for m in members:
                    out[m] = gen.codec
        return out

    def _start_generations(self, sinks: list[Any]) -> None:
        by_key: dict[int, list[tuple[GlzSink, int]]] = {}
        for s in sinks:
            cand = s.glz_candidate() if hasattr(s, "glz_candidate") else None
            if cand is not None:
                by_key.setdefault(cand[0], []).append((s, cand[1]))
        for dictionary_id, found in by_key.items():
            late = []
            for s, w in found:  # join the newest that fits: its images from the next one on, as ids from 0
                fits = [g for g in self.generations if g.dictionary_id == dictionary_id and g.window_pixels <= w]
                if fits:
                    fits[-1].join(s)
                    s.glz, s.glz_used = fits[-1], True
                    late.append(s)
                    self.log.info("{cc} joins {gen} at its image {base}", cc=s, gen=fits[-1], base=fits[-1].next_id)
            found = [(s, w) for s, w in found if s not in late]
            if not found:
                continue
            window = min(min(w for _, w in found), glz.DEFAULT_WINDOW_PIXELS)
            if len(self.generations) >= MAX_GENERATIONS:
                for s, _ in found:
                    s.glz_used = True  # never a member: LZ/LZ4 for its session
                self.refused += len(found)
                continue
            gen = GlzGeneration(self.payloads, dictionary_id, window, [s for s, _ in found])
            for s, _ in found:
                s.glz, s.glz_used = gen, True
            self.generations.append(gen)
            self.started += 1
            self.log.info("{gen} started (dictionary {id}, window {w} pixels)", gen=gen, id=dictionary_id, w=window)

    def leave(self, sink: Any, why: str) -> None:
        """`sink` leaves its generation for good (see the module's docstring)."""
        gen = sink.glz
        if gen is None:
            return
        sink.glz = None
        if sink in gen.members:
            gen.remove(sink)
            gen.left += 1
        self.departures[why] = self.departures.get(why, 0) + 1
        self.log.info("{cc} leaves {gen}: {why}", cc=sink, gen=gen, why=why)
        if not gen.members:
            self.generations.remove(gen)

    def stats(self) -> dict[str, Any]:
        return {
            "generations": [
                {"number": g.number, "members": len(g.members), "images": g.images, "joined": g.joined, "left": g.left}
                for g in self.generations
            ],
            "started": self.started,
            "refused": self.refused,
            "departures": dict(self.departures),
        }
