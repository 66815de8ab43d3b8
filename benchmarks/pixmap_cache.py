"""What the server's model of the clients' pixmap caches costs in memory, per client or shared.

Each client's model holds only ids, sizes and a lossy flag (never pixels). This fills
models as spice-gtk's default budget allows (20,971,520 pixels, DISPLAY_INIT) with a
mix of image sizes like the demo's (icons, tiles, exposed strips), for 1 and 16 clients,
and measures the Python heap they take (tracemalloc). A shared model would be one of
them for all clients with the same cache id. Then the worst case: clients that claim a
huge budget and are sent only distinct small images, so every model fills to its entry
bound, before the server-wide budget (65,536 entries a client, no total) and after it
(MAX_ENTRIES a client, TOTAL_ENTRIES in all). Writes docs/performance.md (pixmap-cache).

  python benchmarks/pixmap_cache.py [--clients 16] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import command_line, cpu_model, md_table, publish  # noqa: E402

from spice_twisted.channels.pixmap_cache import MAX_ENTRIES, TOTAL_ENTRIES, ClientPixmapCache, PixmapCacheBudget  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
SECTION = "pixmap-cache"
BUDGET = 80 * 1024 * 1024 // 4  # spice-gtk's default cache, in pixels
SIZES = [(32, 32), (48, 48), (64, 64), (96, 32), (200, 20), (256, 128)]
OLD_MAX_ENTRIES = 1 << 16  # one client's bound before the server-wide budget, and no total


def fill(cache: ClientPixmapCache, images: int) -> None:
    for i in range(images):
        w, h = SIZES[i % len(SIZES)]
        key = (i * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
        if cache.takes(w * h):
            cache.add(key, w * h, lossy=bool(i & 1))


def heap(clients: int, images: int) -> tuple[int, int]:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    budget = PixmapCacheBudget()  # one for the whole server, as DisplaySettings holds it
    models = [ClientPixmapCache(1, BUDGET, budget=budget) for _ in range(clients)]
    for m in models:
        fill(m, images)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used, len(models[0])


def worst(clients: int, budget: PixmapCacheBudget) -> tuple[int, int]:
    """Heap and entries of `clients` models sent distinct small images up to their bound,
    one client after the other (each newcomer then takes from the largest)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    models = [ClientPixmapCache(1, 1 << 62, budget.per_client, budget, on_evict=lambda: None) for _ in range(clients)]
    key = 0
    for m in models:
        for _ in range(budget.per_client):
            key += 0x9E3779B97F4A7C15
            k = key & ((1 << 64) - 1)
            if m.id_free(k):
                m.add(k, 16 + key % 1000, lossy=False)
        m.take_evicted()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used, sum(len(m) for m in models)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    rows = []
    for images in (1000, 10000, 100000):
        one, entries = heap(1, images)
        many, _ = heap(args.clients, images)
        rows.append(
            [
                f"{images:,}",
                f"{entries:,}",
                f"{one / 2**20:.2f} MiB",
                f"{many / 2**20:.2f} MiB",
                f"{many / max(entries, 1) / args.clients:.0f} B",
            ]
        )
        print(f"images sent {images}: {entries} entries; 1 model {one / 2**20:.2f} MiB; {args.clients} models {many / 2**20:.2f} MiB")
    # Before: measured for one client, times the number of clients (64 full models of the
    # old bound are about 1 GB: too much to allocate on a shared test machine).
    old_one, old_entries = worst(1, PixmapCacheBudget(total=1 << 62, per_client=OLD_MAX_ENTRIES))
    worst_rows = []
    for clients in (1, 8, 64):
        after, entries = worst(clients, PixmapCacheBudget())
        before = old_one * clients
        worst_rows.append(
            [
                str(clients),
                f"{old_entries * clients:,}",
                f"{before / 2**20:.1f} MiB",
                f"{entries:,}",
                f"{after / 2**20:.1f} MiB",
                f"{before / clients / 2**20:.1f} MiB / {after / clients / 2**20:.2f} MiB",
            ]
        )
        print(f"worst case, {clients} clients: before {before / 2**20:.1f} MiB; after {entries} entries {after / 2**20:.1f} MiB")
    publish(
        DOC,
        SECTION,
        [
            "## Pixmap cache: the server's model per client",
            "",
            f"`{command_line()}` on {cpu_model()}. Models filled with a mix of {len(SIZES)} image sizes "
            f"(32x32 to 256x128) under spice-gtk's default budget ({BUDGET:,} pixels), at most {MAX_ENTRIES:,} entries each "
            f"and {TOTAL_ENTRIES:,} in all. A shared model would cost the one-model column for every client with the same cache id.",
            "",
            md_table(["images sent", "entries held", "1 model", f"{args.clients} models", "per entry"], rows),
            "",
            "Worst case: every client claims a huge budget and is sent distinct small images until its model is full. "
            f"Before the server-wide budget (at most {OLD_MAX_ENTRIES:,} entries a client, no total; measured for 1 client, "
            f"times the clients) and after it (at most {MAX_ENTRIES:,} a client, {TOTAL_ENTRIES:,} in all; measured).",
            "",
            md_table(["clients", "entries before", "heap before", "entries after", "heap after", "per client before / after"], worst_rows),
        ],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
