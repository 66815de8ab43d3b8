"""One client's pixmap cache, as the server must know it: which images it holds, and how.

A client stores an image we send with CACHE_ME under the image's id and draws it again
when we send FROM_CACHE with that id; it never evicts on its own (spice-gtk's cache is
a plain table), so the server keeps the LRU, charges each image's pixels to the budget
the client gave in DISPLAY_INIT, and tells it what to drop (INVAL_LIST). A FROM_CACHE
for an id the client does not hold blocks spice-gtk's display channel for good, so this
model is changed only when the message that changes the client's cache is written.

An image's key is a 64-bit content hash of its pixels (`Drawable.content_key`), so the
same image drawn anywhere, by any frame, is the same entry. On the wire its id is the
key's low 32 bits: spice-html5 reads a 64-bit id as `(high << 32) | low` in JavaScript,
which is 32 bits wide, so ids above 2**32 would collide there. The model keeps the full
key of each id; an image whose id is held by other content is sent uncached.

A client holding an entry lossy that must now show it lossless gets INVAL_LIST for it
and then the lossless image with CACHE_ME, not CACHE_REPLACE_ME: spice-html5 ignores
that flag (its entry would stay lossy), and both understand INVAL_LIST.

Each client has its own model: why not one shared by every client with the same cache
id is in docs/architecture.md. Its memory is bounded twice: per client (`MAX_ENTRIES`,
whatever pixel budget the client claims) and across every client (`TOTAL_ENTRIES`, in a
`PixmapCacheBudget` the whole server shares). When every model together is full, an add
takes the oldest entry of the largest model, whoever's it is. That client is told by
INVAL_LIST at its next reactor turn (not in the middle of another client's marshal);
until it is queued, the id is neither drawn from (the entry is gone from the model) nor
given to new content (a CACHE_ME the INVAL_LIST would then undo).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Past this many entries the oldest go whatever the pixel budget says (a hostile
# DISPLAY_INIT could give a budget of 2**62 pixels). An entry costs about 240 bytes of
# Python heap (benchmarks/pixmap_cache.py): 7.4 MiB for a full model.
MAX_ENTRIES = 1 << 15
# Every client's model together, whatever the number of clients: 40-51 MiB of heap measured.
TOTAL_ENTRIES = 1 << 17
# A full budget frees this many entries at once (fewer for a small one), so the search for
# the largest model (one pass over the clients) runs once per batch of adds, not per add.
EVICT_BATCH = 32
# Larger images are not cached: a full-screen refresh would only push out what repeats.
MAX_IMAGE_PIXELS = 512 * 512


WIRE_ID_MASK = 0xFFFFFFFF


def wire_id(key: int) -> int:
    return key & WIRE_ID_MASK


@dataclass(slots=True)
class Entry:
    key: int  # the full content key
    pixels: int
    lossy: bool


class PixmapCacheBudget:
    """The entries every client's model may hold together, and one model at most: what a
    client can make the server hold for its pixmap cache (docs/security.md)."""

    def __init__(self, total: int = TOTAL_ENTRIES, per_client: int = MAX_ENTRIES) -> None:
        self.total = total
        self.per_client = per_client
        self.models: list[ClientPixmapCache] = []
        self.entries = 0  # held by all models together
        self.taken = 0  # entries evicted from one client's model to make room for another's

    def join(self, model: ClientPixmapCache) -> None:
        self.models.append(model)

    def leave(self, model: ClientPixmapCache) -> None:
        """A client gone: its entries no longer count."""
        if model in self.models:
            self.models.remove(model)
            self.entries -= len(model)

    def make_room(self, model: ClientPixmapCache) -> list[int]:
        """Before `model` adds an entry with every model together full: evict the oldest
        entries of the largest model (`model` on a tie). Returns the wire ids taken from
        `model` itself; other models tell their own client."""
        evicted: list[int] = []
        total = max(self.total, 1)
        batch = max(1, min(EVICT_BATCH, total // 64))
        while self.entries >= total and self.models:
            largest = max(self.models, key=lambda m: (len(m), m is model))
            if not largest:
                break
            n = min(batch, len(largest))
            if largest is model:
                evicted += [model.pop_oldest() for _ in range(n)]
            else:
                largest.give_up(n)
                self.taken += n
        return evicted


class ClientPixmapCache:
    def __init__(
        self,
        cache_id: int,
        capacity_px: int,
        max_entries: int = MAX_ENTRIES,
        budget: PixmapCacheBudget | None = None,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self.cache_id = cache_id
        self.capacity = max(0, capacity_px)
        self.budget = budget if budget is not None else PixmapCacheBudget()
        self.max_entries = min(max_entries, self.budget.per_client)
        self.on_evict = on_evict  # soon, an INVAL_LIST of what another client's add took (`take_evicted`)
        self.evicted: list[int] = []  # wire ids taken so, not yet in an INVAL_LIST
        self.peak = 0  # the most entries since the table was last rebuilt (a dict never shrinks)
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.used = 0
        self.hits = self.adds = self.evictions = 0
        self.saved_bytes = 0  # payload bytes a FROM_CACHE replaced
        self.budget.join(self)

    def close(self) -> None:
        """The client is gone (or starts a new model): give its entries back to the budget."""
        self.budget.leave(self)

    def __bool__(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self.entries)

    def takes(self, pixels: int) -> bool:
        """Whether an image of this size is worth caching for this client at all."""
        return 0 < pixels <= min(self.capacity, MAX_IMAGE_PIXELS)

    def lookup(self, key: int) -> Entry | None:
        """The entry of this content, if the client holds it."""
        e = self.entries.get(wire_id(key))
        return e if e is not None and e.key == key else None

    def drawable_from(self, key: int, lossy_ok: bool) -> Entry | None:
        """The entry a FROM_CACHE of this content may draw: held, and lossless unless a
        lossy picture will do."""
        e = self.lookup(key)
        return e if e is not None and (lossy_ok or not e.lossy) else None

    def id_free(self, key: int) -> bool:
        """Whether this content's wire id is held by no other content (nor still on its way out)."""
        wid = wire_id(key)
        e = self.entries.get(wid)
        return e.key == key if e is not None else wid not in self.evicted

    def hit(self, key: int, saved: int) -> None:
        """A FROM_CACHE of `key` is being written."""
        self.entries.move_to_end(wire_id(key))
        self.hits += 1
        self.saved_bytes += saved

    def add(self, key: int, pixels: int, lossy: bool) -> list[int]:
        """An image with CACHE_ME is being written; returns the wire ids to drop (oldest first)."""
        wid = wire_id(key)
        assert wid not in self.entries and self.takes(pixels)
        evicted = []
        while self.entries and (self.used + pixels > self.capacity or len(self.entries) >= self.max_entries):
            evicted.append(self.pop_oldest())
        evicted += self.budget.make_room(self)
        self.entries[wid] = Entry(key, pixels, lossy)
        self.peak = max(self.peak, len(self.entries))
        self.used += pixels
        self.budget.entries += 1
        self.adds += 1
        return evicted

    def pop_oldest(self) -> int:
        """Drop the least recently used entry; returns its wire id for the INVAL_LIST."""
        old, e = self.entries.popitem(last=False)
        self.used -= e.pixels
        self.budget.entries -= 1
        self.evictions += 1
        return old

    def give_up(self, n: int) -> None:
        """Another client's add needs room: drop the `n` oldest entries; the client is told
        when its channel asks for them (`take_evicted`)."""
        if not self.evicted and self.on_evict is not None:
            self.on_evict()
        self.evicted += [self.pop_oldest() for _ in range(min(n, len(self.entries)))]
        if self.peak > 1024 and len(self.entries) < self.peak // 2:
            # Taken down to half: a table sized for the peak would keep its memory.
            self.entries = OrderedDict(self.entries)
            self.peak = len(self.entries)

    def take_evicted(self) -> list[int]:
        """The ids `give_up` took, as their INVAL_LIST is queued."""
        ids, self.evicted = self.evicted, []
        return ids

    def remove(self, key: int) -> int:
        """INVAL_LIST of this content is being queued; returns its wire id."""
        wid = wire_id(key)
        e = self.entries.pop(wid)
        self.used -= e.pixels
        self.budget.entries -= 1
        return wid
