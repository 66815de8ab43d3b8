"""`image:PATH`: a still picture served at its own size, pixel for pixel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..render.cursor import arrow_cursor
from .base import DisplaySource, rgb_to_xrgb

if TYPE_CHECKING:
    from ..render.cursor import CursorService
    from ..render.service import RenderService


class ImageSource(DisplaySource):
    def __init__(self, path: str) -> None:
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read image {path!r}: {exc}") from None
        self.path = path
        self.name = f"image:{path}"
        self.height, self.width = rgb.shape[:2]
        self.frame = rgb_to_xrgb(rgb)

    def start(self, render: RenderService, cursor: CursorService) -> None:
        self.render = render
        render.primary.pixels[:] = self.frame
        render.damage(render.primary.rect)
        cursor.set_shape(arrow_cursor())

    def resize(self, width: int, height: int) -> None:
        """Serve the picture on a screen of a new size, tiled from the top left (what a
        display whose mode changed looks like: every client gets the new size)."""
        self.render.resize(width, height)
        reps = (-(-height // self.height), -(-width // self.width), 1)
        self.render.primary.pixels[:] = np.tile(self.frame, reps)[:height, :width]
        self.render.damage(self.render.primary.rect)
