"""Generated test images of each kind a desktop shows, as H x W x 4 uint8 B,G,R,X; and PSNR.

Shared by the codec and classifier tests and benchmarks/codecs.py, so the benchmark's
numbers are about the images the tests check. Deterministic (seeded), no files.
JPEG is decoded here with Pillow (its own libjpeg), independent of our encoder's binding.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _bgrx(rgb: np.ndarray) -> np.ndarray:
    """RGB (H x W x 3) -> B,G,R,X in one contiguous `bytes`, as Surface.crop hands pixels out."""
    h, w = rgb.shape[:2]
    out = np.zeros((h, w, 4), np.uint8)
    out[..., :3] = rgb[..., ::-1]
    return np.frombuffer(out.tobytes(), np.uint8).reshape(h, w, 4)


def _resized_noise(rng: np.random.Generator, h: int, w: int, cell: int, sigma: float) -> np.ndarray:
    """Gaussian noise on a grid of `cell` pixels, interpolated bicubically: smooth blobs."""
    small = np.clip(rng.normal(128, sigma, (h // cell + 2, w // cell + 2, 3)), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.float32) - 128


def photo(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A generated "photo": smooth colour gradients, large soft shapes and fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 90 * np.sin(xx / 97 + c) * np.cos(yy / 71 - c) for c in (0.0, 1.0, 2.0)], -1)
    texture = _resized_noise(rng, h, w, 2, 30) * 0.15
    return _bgrx(np.clip(base + _resized_noise(rng, h, w, 16, 40) + texture, 0, 255).astype(np.uint8))


def smooth_noise(h: int, w: int, seed: int = 2) -> np.ndarray:
    """Blurred noise: clouds, skin, sky; no edges at all."""
    rng = np.random.default_rng(seed)
    return _bgrx(np.clip(128 + 1.5 * _resized_noise(rng, h, w, 16, 50), 0, 255).astype(np.uint8))


def gradient(h: int, w: int) -> np.ndarray:
    """A diagonal colour gradient (a wallpaper, a styled title bar), no texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx / max(w - 1, 1) + yy / max(h - 1, 1)) / 2
    rgb = np.stack([40 + 180 * t, 90 + 100 * (1 - t), 200 - 120 * t], -1)
    return _bgrx(rgb.astype(np.uint8))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size)  # a TrueType font where Pillow has FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


LOREM = (
    "def encode(pixels): return Payload(codec, image_type, fields, nbytes)  # one shared encode",
    "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "File  Edit  View  Terminal  Tabs  Help      spice-twisted: 3 clients connected",
)


def text_ui(h: int, w: int, seed: int = 3) -> np.ndarray:
    """Window chrome and anti-aliased text on flat backgrounds: an editor or a terminal."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), (236, 236, 236))
    d = ImageDraw.Draw(im)
    font = _font(13)
    d.rectangle([0, 0, w, 26], fill=(53, 132, 228))  # title bar
    d.text((10, 6), "notes.txt - Text Editor", fill=(255, 255, 255), font=font)
    for i, x in enumerate(range(w - 80, w - 8, 24)):  # title bar buttons
        d.ellipse([x, 5, x + 16, 21], fill=((237, 51, 59), (246, 211, 45), (51, 209, 122))[i % 3])
    d.rectangle([0, 27, w, 50], fill=(222, 222, 222))  # menu bar
    d.text((10, 31), LOREM[2], fill=(20, 20, 20), font=font)
    if h > 70 and w > 20:
        d.rectangle([8, 58, w - 9, h - 9], fill=(255, 255, 255), outline=(160, 160, 160))  # text area
    y, line = 64, 0
    while y < h - 24:
        indent = 12 + 16 * int(rng.integers(0, 4))
        d.text((indent, y), LOREM[line % 2][: int(rng.integers(20, 90))], fill=(30, 30, 30), font=font)
        y, line = y + 18, line + 1
    if w > 200 and h > 120:  # a button with a border
        d.rectangle([w - 120, h - 44, w - 24, h - 18], fill=(245, 245, 245), outline=(120, 120, 120))
        d.text((w - 100, h - 38), "Save", fill=(0, 0, 0), font=font)
    return _bgrx(np.asarray(im))


def mostly_flat(h: int, w: int) -> np.ndarray:
    """A desktop background with a few flat rectangles and one short label."""
    im = Image.new("RGB", (w, h), (46, 52, 64))
    d = ImageDraw.Draw(im)
    d.rectangle([w // 8, h // 6, w // 2, h // 2], fill=(76, 86, 106))
    d.rectangle([w // 2 + 10, h // 3, w - w // 10, h - h // 8], fill=(229, 233, 240))
    d.text((w // 8 + 6, h // 6 + 6), "Trash", fill=(255, 255, 255), font=_font(13))
    return _bgrx(np.asarray(im))


def palette_picture(h: int, w: int, colours: int, seed: int = 5) -> np.ndarray:
    """BGRX of exactly `colours` colours, terminal-like: a background, glyph-ish dots of the
    other colours every third row, some rows repeated (LZ_PLT's content)."""
    rng = np.random.default_rng(seed)
    pal = rng.choice(1 << 24, colours, replace=False).astype(np.uint32)
    idx = np.zeros((h, w), np.intp)
    for y in range(0, h, 3):
        xs = rng.integers(0, w, max(1, w // 4))
        idx[y, xs] = rng.integers(1, colours, len(xs)) if colours > 1 else 0
        if y + 1 < h:
            idx[y + 1] = idx[y] if rng.random() < 0.5 else rng.integers(0, colours, w)
    idx.flat[:colours] = np.arange(min(colours, idx.size))  # every colour present
    return np.ascontiguousarray(pal[idx].astype("<u4").view(np.uint8).reshape(h, w, 4))


def noise(h: int, w: int, seed: int = 4) -> np.ndarray:
    """Uniform random pixels: incompressible, and lossy ruins them."""
    rng = np.random.default_rng(seed)
    return _bgrx(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# kind -> generator(h, w)
KINDS: dict[str, Callable[[int, int], np.ndarray]] = {
    "text_ui": text_ui,
    "photo": photo,
    "smooth_noise": smooth_noise,
    "gradient": gradient,
    "mostly_flat": mostly_flat,
    "noise": noise,
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the B, G, R channels (the X byte carries nothing)."""
    d = a[..., :3].astype(np.float64) - b[..., :3].astype(np.float64)
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def pillow_decode(jfif: bytes) -> np.ndarray:
    """A JPEG back to B,G,R,X (X = 0) with Pillow."""
    im = Image.open(io.BytesIO(jfif))
    assert im.format == "JPEG"
    rgb = np.asarray(im.convert("RGB"))
    out = np.zeros((*rgb.shape[:2], 4), np.uint8)
    out[..., :3] = rgb[..., ::-1]
    return out
