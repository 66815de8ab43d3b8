"""The demo's video: a moving plasma, generated frame by frame (nothing downloaded).

Smooth colour fields that change every pixel every frame, like a film: the render
service sees the same rect redrawn at the demo's tick rate with photo-like content and
sends it as a video stream (render/streams.py). F9 (or `DemoSource(video=True)`, or
the test harness's `video on`) shows and hides it.
"""

from __future__ import annotations

import numpy as np

from ..render.rect import Rect

VIDEO = Rect(660, 460, 660 + 320, 460 + 180)  # on the desktop, right of where tests draw strokes
VIDEO_KEY = 0x43  # F9 (PC XT set-1 scancode)


class Plasma:
    """Frames of VIDEO's size as B,G,R,X uint8, a function of the frame number only
    (so a test may recompute any frame)."""

    def __init__(self, width: int = VIDEO.width, height: int = VIDEO.height) -> None:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        self.x, self.y = x / width, y / height
        self.width, self.height = width, height
        # A fixed fine grain (film noise): without it, neighbouring pixels of a plasma
        # would often be equal, as in flat UI.
        self.grain = np.random.default_rng(7).integers(-3, 4, (height, width, 1)).astype(np.float32)

    def frame(self, n: int) -> np.ndarray:
        t = n / 12.0
        x, y = self.x, self.y
        v = np.sin(x * 10 + t) + np.sin((y * 8 - t) * 1.3) + np.sin((x * 6 + y * 7 + t) * 0.9)
        v += np.sin(np.sqrt((x - 0.5 - 0.3 * np.sin(t * 0.7)) ** 2 + (y - 0.5) ** 2) * 18 - t * 2)
        out = np.empty((self.height, self.width, 4), np.uint8)
        rgb = np.stack([np.sin(v * np.pi + k) for k in (4.0, 2.0, 0.0)], axis=-1)  # B, G, R
        out[..., :3] = np.clip(rgb * 110 + 128 + self.grain, 0, 255).astype(np.uint8)
        out[..., 3] = 0
        return out
