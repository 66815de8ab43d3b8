"""`demo`: a built-in 1024x768 desktop that keeps changing, so a new user sees something at once.

A static backdrop (gradient, title bar, a window with text) is drawn once with
Pillow; then a clock in the title bar is redrawn each second and a ball bounces
at `fps`. Only the areas that changed are committed (damage-driven).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from twisted.internet import task

from ..render.rect import Rect
from .base import DisplaySource, rgb_to_xrgb

if TYPE_CHECKING:
    from ..render.service import RenderService

WIDTH, HEIGHT = 1024, 768
BAR_H = 36
CLOCK_BOX = Rect(WIDTH - 200, 0, WIDTH, BAR_H)
BALL = 48


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


class DemoSource(DisplaySource):
    name = "demo"

    def __init__(self, fps: float = 20.0, clock: object | None = None) -> None:
        self.width, self.height = WIDTH, HEIGHT
        self.fps = fps
        self._clock = clock
        self._loop: task.LoopingCall | None = None
        self.render: RenderService | None = None
        self.backdrop = rgb_to_xrgb(self._draw_backdrop())
        self.ball = self._draw_ball()
        self.pos = [200.0, 300.0]
        self.vel = [7.0, 5.0]
        self._shown_time = ""
        self.frames = 0

    # --- drawing ------------------------------------------------------------------------
    def _draw_backdrop(self) -> np.ndarray:
        y = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
        x = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[None, :]
        rgb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        rgb[..., 0] = (30 + 40 * y + 20 * x).astype(np.uint8)
        rgb[..., 1] = (60 + 80 * y).astype(np.uint8)
        rgb[..., 2] = (110 + 100 * (1 - y) + 20 * x).astype(np.uint8)
        img = Image.fromarray(rgb, "RGB")
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, WIDTH, BAR_H], fill=(24, 26, 32))
        d.text((12, 7), "spice-twisted demo desktop", fill=(230, 230, 235), font=_font(20))
        d.rectangle([60, 90, 560, 380], fill=(245, 245, 240), outline=(40, 40, 60), width=2)
        d.rectangle([60, 90, 560, 118], fill=(70, 90, 150))
        d.text((72, 94), "Welcome", fill=(255, 255, 255), font=_font(18))
        lines = [
            "You are looking at a SPICE display served by Twisted.",
            "Every connected client sees this same desktop.",
            "",
            "Connect more viewers:",
            "  remote-viewer spice://127.0.0.1:5900",
        ]
        for i, line in enumerate(lines):
            d.text((76, 134 + 26 * i), line, fill=(20, 20, 30), font=_font(17))
        for i, colour in enumerate([(220, 60, 60), (60, 180, 80), (60, 110, 220), (230, 200, 40)]):
            d.rectangle([620 + 90 * i, 120, 690 + 90 * i, 190], fill=colour)
        return np.asarray(img)

    def _draw_ball(self) -> np.ndarray:
        img = Image.new("RGB", (BALL, BALL), (0, 0, 0))
        ImageDraw.Draw(img).ellipse([0, 0, BALL - 1, BALL - 1], fill=(250, 120, 30), outline=(255, 255, 255))
        sprite = rgb_to_xrgb(np.asarray(img))
        mask = np.asarray(img.convert("L")) > 0
        return np.where(mask[..., None], sprite.astype(np.int16), np.int16(-1))  # -1 = transparent

    def _clock_pixels(self, text: str) -> np.ndarray:
        img = Image.new("RGB", (CLOCK_BOX.width, CLOCK_BOX.height), (24, 26, 32))
        ImageDraw.Draw(img).text((20, 7), text, fill=(150, 220, 150), font=_font(20))
        return rgb_to_xrgb(np.asarray(img))

    # --- running ------------------------------------------------------------------------
    def start(self, render: RenderService) -> None:
        self.render = render
        render.primary.pixels[:] = self.backdrop
        self._paint_clock(force=True)
        self._paint_ball()
        render.commit([render.primary.rect])
        self._loop = task.LoopingCall(self.tick)
        if self._clock is not None:
            self._loop.clock = self._clock
        self._loop.start(1.0 / self.fps, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _ball_rect(self) -> Rect:
        x, y = int(self.pos[0]), int(self.pos[1])
        return Rect(x, y, x + BALL, y + BALL)

    def _paint_ball(self) -> Rect:
        assert self.render is not None
        r = self._ball_rect()
        px = self.render.primary.pixels[r.top : r.bottom, r.left : r.right]
        px[:] = np.where(self.ball >= 0, self.ball, self.backdrop[r.top : r.bottom, r.left : r.right]).astype(np.uint8)
        return r

    def _paint_clock(self, force: bool = False) -> Rect | None:
        assert self.render is not None
        text = time.strftime("%H:%M:%S")
        if text == self._shown_time and not force:
            return None
        self._shown_time = text
        r = CLOCK_BOX
        self.render.primary.pixels[r.top : r.bottom, r.left : r.right] = self._clock_pixels(text)
        return r

    def tick(self) -> None:
        """Move the ball one step and commit only what changed."""
        assert self.render is not None
        if self.paused:
            return
        self.frames += 1
        old = self._ball_rect()
        pixels = self.render.primary.pixels
        pixels[old.top : old.bottom, old.left : old.right] = self.backdrop[old.top : old.bottom, old.left : old.right]
        for i, limit in ((0, WIDTH - BALL), (1, HEIGHT - BALL)):
            self.pos[i] += self.vel[i]
            lo = BAR_H if i == 1 else 0
            if not lo <= self.pos[i] <= limit:
                self.vel[i] = -self.vel[i]
                self.pos[i] = min(max(self.pos[i], lo), limit)
        damage = [old.union(self._paint_ball())]
        clock = self._paint_clock()
        if clock is not None:
            damage.append(clock)
        self.render.commit(damage)
