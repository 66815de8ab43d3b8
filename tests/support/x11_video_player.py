"""A minimal X11 "video player" for the stream tests: a window showing the demo's plasma
(sources/demo_video.py) at a steady rate, drawn with PutImage as a player without GPU
output would. Run under the worktree's Python with DISPLAY set:

    python tests/support/x11_video_player.py X Y FPS SPEED

It draws frame `n * SPEED` every 1/FPS seconds at (X, Y) until it is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for the plasma

import xcffib  # noqa: E402
import xcffib.xproto as xp  # noqa: E402

from spice_twisted.sources.demo_video import VIDEO, Plasma  # noqa: E402


def main() -> None:
    x, y, fps, speed = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    w, h = VIDEO.width, VIDEO.height
    conn = xcffib.connect()
    screen = conn.get_setup().roots[0]
    win = conn.generate_id()
    # Override-redirect: exactly at (x, y) without a frame, whatever window manager runs.
    conn.core.CreateWindow(
        screen.root_depth, win, screen.root, x, y, w, h, 0, xp.WindowClass.InputOutput, screen.root_visual,
        xp.CW.OverrideRedirect, [1],
    )  # fmt: skip
    gc = conn.generate_id()
    conn.core.CreateGC(gc, win, 0, [])
    conn.core.MapWindow(win)
    conn.flush()
    plasma = Plasma(w, h)
    n = 0
    start = time.monotonic()
    while True:
        data = plasma.frame(n * speed).tobytes()  # B, G, R, X: a 24-bit ZPixmap at 32 bits a pixel
        conn.core.PutImage(xp.ImageFormat.ZPixmap, win, gc, w, h, 0, 0, 0, screen.root_depth, len(data), data)
        conn.flush()
        n += 1
        time.sleep(max(0.0, start + n / fps - time.monotonic()))


if __name__ == "__main__":
    main()
