"""Fixed pictures the demo shows again and again: slideshow slides and dock icons.

Each picture is drawn once and kept, and always drawn into exactly its own rect, so a
repeat is pixel-identical to the last time it was shown: what a content-hash pixmap
cache needs to send it by reference.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import rgb_to_xrgb

SLIDE_W, SLIDE_H = 160, 120
SLIDES = 4
ICON = 56


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


@functools.cache
def slide(k: int) -> np.ndarray:
    """Slide k (0..SLIDES-1) as B, G, R, X: a smooth, photo-like picture (gradients, a sun,
    hills, mild noise) with its number, so lossy codecs have something to do too."""
    rng = np.random.default_rng(1000 + k)
    y = np.linspace(0.0, 1.0, SLIDE_H, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, SLIDE_W, dtype=np.float32)[None, :]
    hue = [(70, 120, 200), (200, 110, 60), (60, 160, 110), (150, 80, 170)][k % 4]
    rgb = np.empty((SLIDE_H, SLIDE_W, 3), dtype=np.float32)
    for c in range(3):
        rgb[..., c] = hue[c] * (0.55 + 0.45 * (1 - y)) + 40 * x
    cx, cy = 0.25 + 0.5 * ((k * 37) % 10) / 10, 0.3
    sun = np.exp(-(((x - cx) * 4) ** 2 + ((y - cy) * 5) ** 2))
    rgb += sun[..., None] * np.array([255, 230, 160], dtype=np.float32) * 0.8
    hill = y > 0.65 + 0.12 * np.sin(x * (6 + k) + k)
    rgb[hill] = rgb[hill] * 0.45 + np.array([40, 90, 40], dtype=np.float32)
    rgb += rng.normal(0, 1.5, rgb.shape).astype(np.float32)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.text((8, 4), f"slide {k + 1}/{SLIDES}", fill=(255, 255, 255), font=font(14))
    return _frozen(rgb_to_xrgb(np.asarray(img)))


@functools.cache
def icon(highlighted: bool) -> np.ndarray:
    """A dock icon as B, G, R, X; every icon in the row is this same picture."""
    bg = (40, 44, 56)
    img = Image.new("RGB", (ICON, ICON), bg)
    d = ImageDraw.Draw(img)
    face = (120, 170, 250) if highlighted else (80, 110, 170)
    d.rounded_rectangle([3, 3, ICON - 4, ICON - 4], radius=10, fill=face, outline=(255, 255, 255) if highlighted else (20, 20, 30), width=2)
    d.rectangle([14, 16, ICON - 15, ICON - 22], fill=(245, 245, 240), outline=(30, 30, 40))
    d.rectangle([14, 16, ICON - 15, 22], fill=(70, 90, 150))
    d.line([(18, 28), (ICON - 19, 28)], fill=(60, 60, 70))
    d.line([(18, 32), (ICON - 24, 32)], fill=(60, 60, 70))
    return _frozen(rgb_to_xrgb(np.asarray(img)))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # shared by every use: nobody may paint into it
    return a
