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
id is in docs/architecture.md.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Past this many entries the oldest go whatever the pixel budget says (a hostile
# DISPLAY_INIT could give a budget of 2**62 pixels).
MAX_ENTRIES = 1 << 16
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


class ClientPixmapCache:
    def __init__(self, cache_id: int, capacity_px: int, max_entries: int = MAX_ENTRIES) -> None:
        self.cache_id = cache_id
        self.capacity = max(0, capacity_px)
        self.max_entries = max_entries
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.used = 0
        self.hits = self.adds = self.evictions = 0
        self.saved_bytes = 0  # payload bytes a FROM_CACHE replaced

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
        """Whether this content's wire id is held by no other content."""
        e = self.entries.get(wire_id(key))
        return e is None or e.key == key

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
            old, e = self.entries.popitem(last=False)
            self.used -= e.pixels
            evicted.append(old)
        self.entries[wid] = Entry(key, pixels, lossy)
        self.used += pixels
        self.adds += 1
        self.evictions += len(evicted)
        return evicted

    def remove(self, key: int) -> int:
        """INVAL_LIST of this content is being queued; returns its wire id."""
        wid = wire_id(key)
        e = self.entries.pop(wid)
        self.used -= e.pixels
        return wid
