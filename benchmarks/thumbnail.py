"""What the dashboard's display thumbnail (admin_ui/thumbnail.py) costs per picture.

For a desktop-like surface (a gradient, windows, text-like strokes, a photo-like patch) at
1024x768, 1920x1080 and 3840x2160: the copy made on the reactor (`reduced_copy`), the
scaling and JPEG encode made in a pool thread (`encode_jpeg`), in the thread's CPU time
(median of --repeat runs), and the JPEG's size. At most one such picture is made per
second, whatever the number of dashboards open, and none while the display is unchanged.
Writes docs/performance.md (dashboard-thumbnail).

  .venv/bin/python benchmarks/thumbnail.py [--repeat 15] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from admin_ui.thumbnail import encode_jpeg, reduced_copy, thumbnail_size  # noqa: E402
from benchmarks._report import ROOT, command_line, cpu_model, load_average, md_table, publish  # noqa: E402

SIZES = [(1024, 768), (1920, 1080), (3840, 2160)]


def desktop(width: int, height: int, seed: int = 7) -> np.ndarray:
    """B, G, R, X pixels that look like a desktop to a codec."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    px = np.zeros((height, width, 4), dtype=np.uint8)
    px[..., 0] = 120 + (y * 100 // height)
    px[..., 1] = 60 + (x * 60 // width)
    px[..., 2] = 40
    for _ in range(8):  # windows: a light body, a dark title bar, lines of "text"
        w, h = rng.integers(width // 6, width // 2), rng.integers(height // 6, height // 2)
        left, top = rng.integers(0, width - w), rng.integers(0, height - h)
        px[top : top + h, left : left + w, :3] = 236
        px[top : top + 24, left : left + w, :3] = (90, 60, 40)
        for row in range(top + 34, top + h - 10, 16):
            mask = rng.random((9, w - 20)) < 0.3
            px[row : row + 9, left + 10 : left + w - 10, :3][mask] = 20
    ph, pw = height // 4, width // 4  # a photo-like patch
    px[height - ph :, width - pw :, :3] = rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)
    return px


def median_cpu(repeat: int, fn: Callable[..., object], *args: object) -> float:
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        fn(*args)
        times.append(time.thread_time() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for width, height in SIZES:
        px = desktop(width, height)
        size = thumbnail_size(width, height)
        copy = reduced_copy(px, size)
        jpeg = encode_jpeg(copy, size)
        rows.append(
            [
                f"{width}x{height}",
                f"{size[0]}x{size[1]}",
                f"{copy.shape[1]}x{copy.shape[0]}",
                f"{median_cpu(args.repeat, reduced_copy, px, size) * 1000:.2f}",
                f"{median_cpu(args.repeat, encode_jpeg, copy, size) * 1000:.2f}",
                f"{len(jpeg) / 1024:.1f}",
            ]
        )
    lines = [
        "",
        f"`{command_line()}` on {cpu_model()} (load {load_average()}), thread CPU time, median of {args.repeat}:",
        "",
        md_table(["surface", "thumbnail", "copied on the reactor", "copy (ms, reactor)", "scale + JPEG (ms, thread)", "JPEG (KiB)"], rows),
        "",
    ]
    print(publish(ROOT / "docs" / "performance.md", "dashboard-thumbnail", lines, write=not args.no_write))


if __name__ == "__main__":
    main()
