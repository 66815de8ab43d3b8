"""The interface every display source offers the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..render.service import RenderService


def rgb_to_xrgb(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) RGB -> (h, w, 4) in SPICE 32-bit memory order B, G, R, X."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 4), dtype=np.uint8)
    out[..., 0] = rgb[..., 2]
    out[..., 1] = rgb[..., 1]
    out[..., 2] = rgb[..., 0]
    out[..., 3] = 0
    return out


class DisplaySource:
    """A source knows its size, draws into `render.primary.pixels` and commits rects."""

    width: int = 0
    height: int = 0
    name: str = "source"
    paused: bool = False  # a paused source commits nothing (tests compare still frames)

    def start(self, render: RenderService) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass
