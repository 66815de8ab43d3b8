"""One client's pixmap cache, as the server must know it: which images it holds, and how.

A client stores an image we send with CACHE_ME under the image's id and draws it again
when we send FROM_CACHE with that id; it never evicts on its own (spice-gtk's cache is
a plain table), so the server keeps the LRU, charges each image's pixels to the budget
the client gave in DISPLAY_INIT, and tells it what to drop (INVAL_LIST). A FROM_CACHE
for an id the client does not hold blocks spice-gtk's display channel for good, so this
model is changed only when the message that changes the client's cache is written.

Ids are 64-bit content hashes of the pixels (`Drawable.content_key`), so the same image
drawn anywhere, by any frame, is the same entry. Each client has its own model: why not
one shared by every client with the same cache id is in docs/architecture.md.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Past this many entries the oldest go whatever the pixel budget says (a hostile
# DISPLAY_INIT could give a budget of 2**62 pixels).
MAX_ENTRIES = 1 << 16
# Larger images are not cached: a full-screen refresh would only push out what repeats.
MAX_IMAGE_PIXELS = 512 * 512


@dataclass(slots=True)
class Entry:
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
        return self.entries.get(key)

    def hit(self, key: int, saved: int) -> None:
        """A FROM_CACHE of `key` is being written."""
        self.entries.move_to_end(key)
        self.hits += 1
        self.saved_bytes += saved

    def add(self, key: int, pixels: int, lossy: bool) -> list[int]:
        """An image with CACHE_ME is being written; returns the ids to drop (oldest first)."""
        assert key not in self.entries and self.takes(pixels)
        evicted = []
        while self.entries and (self.used + pixels > self.capacity or len(self.entries) >= self.max_entries):
            old, e = self.entries.popitem(last=False)
            self.used -= e.pixels
            evicted.append(old)
        self.entries[key] = Entry(pixels, lossy)
        self.used += pixels
        self.adds += 1
        self.evictions += len(evicted)
        return evicted

    def replace(self, key: int) -> None:
        """A lossless image with CACHE_REPLACE_ME is being written over a lossy entry."""
        e = self.entries[key]
        e.lossy = False
        self.entries.move_to_end(key)

    def clear(self) -> None:
        """INVAL_ALL_PIXMAPS is being written."""
        self.entries.clear()
        self.used = 0
