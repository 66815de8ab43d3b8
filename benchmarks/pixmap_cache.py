"""What the server's model of the clients' pixmap caches costs in memory, per client or shared.

Each client's model holds only ids, sizes and a lossy flag (never pixels). This fills
models as spice-gtk's default budget allows (20,971,520 pixels, DISPLAY_INIT) with a
mix of image sizes like the demo's (icons, tiles, exposed strips), for 1 and 16 clients,
and measures the Python heap they take (tracemalloc). A shared model would be one of
them for all clients with the same cache id. Writes docs/performance.md (pixmap-cache).

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

from _report import command_line, cpu_model, md_table, write_between  # noqa: E402

from spice_twisted.channels.pixmap_cache import MAX_ENTRIES, ClientPixmapCache  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
SECTION = "pixmap-cache"
BUDGET = 80 * 1024 * 1024 // 4  # spice-gtk's default cache, in pixels
SIZES = [(32, 32), (48, 48), (64, 64), (96, 32), (200, 20), (256, 128)]


def fill(cache: ClientPixmapCache, images: int) -> None:
    for i in range(images):
        w, h = SIZES[i % len(SIZES)]
        key = (i * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
        if cache.takes(w * h):
            cache.add(key, w * h, lossy=bool(i & 1))


def heap(clients: int, images: int) -> tuple[int, int]:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    models = [ClientPixmapCache(1, BUDGET) for _ in range(clients)]
    for m in models:
        fill(m, images)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used, len(models[0])


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
    text = "\n".join(
        [
            f"<!-- {SECTION}:begin -->",
            "## Pixmap cache: the server's model per client",
            "",
            f"`{command_line()}` on {cpu_model()}. Models filled with a mix of {len(SIZES)} image sizes "
            f"(32x32 to 256x128) under spice-gtk's default budget ({BUDGET:,} pixels), at most {MAX_ENTRIES:,} entries each. "
            "A shared model would cost the one-model column for every client with the same cache id.",
            "",
            md_table(["images sent", "entries held", "1 model", f"{args.clients} models", "per entry"], rows),
            f"<!-- {SECTION}:end -->",
        ]
    )
    if not args.no_write:
        write_between(DOC, SECTION, text)
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
