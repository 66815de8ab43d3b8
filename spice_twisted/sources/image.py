"""`image:PATH`: a still picture served at its own size, pixel for pixel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from twisted.logger import Logger

from ..render.cursor import arrow_cursor
from ..render.surface import DEFAULT_MAX_SURFACE, SurfaceBound
from .base import DisplaySource, rgb_to_xrgb

if TYPE_CHECKING:
    from ..render.cursor import CursorService
    from ..render.service import RenderService


class ImageSource(DisplaySource):
    log = Logger()

    def __init__(self, path: str, max_surface: SurfaceBound = DEFAULT_MAX_SURFACE) -> None:
        self.max_surface = max_surface
        try:
            with Image.open(path) as img:
                if not max_surface.allows(*img.size):  # checked before decoding a pixel
                    raise ValueError(max_surface.refusal(f"image {path!r}", *img.size))
                rgb = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise ValueError(f"cannot read image {path!r}: {exc}") from None
        self.path = path
        self.name = f"image:{path}"
        self.height, self.width = rgb.shape[:2]
        self.frame = rgb_to_xrgb(rgb)

    def start(self, render: RenderService, cursor: CursorService) -> None:
        self.render = render
        self.bind_bound(render)
        render.primary.pixels[:] = self.frame
        render.damage(render.primary.rect)
        cursor.set_shape(arrow_cursor())

    def resize(self, width: int, height: int) -> None:
        """Serve the picture on a screen of a new size, tiled from the top left (what a
        display whose mode changed looks like: every client gets the new size). Past
        --max-surface the screen keeps its size, and clients and the log are told."""
        if not self.max_surface.allows(width, height):
            why = self.max_surface.refusal("the new screen", width, height)
            self.log.warn("{why}: kept at {w}x{h}", why=why, w=self.render.width, h=self.render.height)
            if self.notify_clients is not None:
                self.notify_clients(f"{why}; the screen stays {self.render.width}x{self.render.height}")
            return
        self.render.resize(width, height)
        reps = (-(-height // self.height), -(-width // self.width), 1)
        self.render.primary.pixels[:] = np.tile(self.frame, reps)[:height, :width]
        self.render.damage(self.render.primary.rect)
