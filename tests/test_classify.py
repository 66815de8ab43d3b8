"""classify.lossy_pays: yes for photo-like images, no for text, window chrome, flat areas and noise.

On generated images of each kind (support/images.py, text drawn by Pillow), and the
vectorised score checked against a plain per-square loop over the same samples.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support import images
from support.images import pillow_decode, psnr

from spice_twisted import codecs
from spice_twisted.codecs import classify

SIZES = ((768, 1024), (256, 256), (96, 128))  # h, w


def _bgrx(rgb: np.ndarray) -> np.ndarray:
    out = np.zeros((*rgb.shape[:2], 4), np.uint8)
    out[..., :3] = rgb[..., ::-1]
    return out


def terminal(h: int, w: int) -> np.ndarray:
    """Light text on a dark background, a prompt and a cursor block."""
    im = Image.new("RGB", (w, h), (30, 30, 30))
    d = ImageDraw.Draw(im)
    for i, y in enumerate(range(4, h - 14, 16)):
        d.text((4, y), f"user@host:~/spice-twisted$ pytest -q tests/test_{i}.py  ...... [100%]"[: w // 6], fill=(200, 200, 200))
    d.rectangle([4, h - 14, 12, h - 2], fill=(200, 200, 200))
    return _bgrx(np.asarray(im))


def window_over_photo(h: int, w: int) -> np.ndarray:
    """A photo wallpaper, mostly (80%) covered by an editor window: judged by the window."""
    px = np.array(images.photo(h, w))
    mh, mw = h // 20, w // 20
    px[mh : h - mh, mw : w - mw] = images.text_ui(h - 2 * mh, w - 2 * mw)
    return px


def photo_with_caption(h: int, w: int) -> np.ndarray:
    """A photo viewer: the photo, a thin flat caption bar with text under it."""
    px = np.array(images.photo(h, w))
    bar = max(16, h // 12)
    px[h - bar :] = images.text_ui(bar, w)
    return px


def test_photo_like_images_pay():
    for h, w in SIZES:
        for kind in ("photo", "smooth_noise"):
            px = images.KINDS[kind](h, w)
            assert classify.lossy_pays(px), (kind, w, h, classify.graduality(px))
        assert classify.lossy_pays(photo_with_caption(h, w)), (w, h)


@pytest.mark.parametrize("make", [images.text_ui, images.mostly_flat, images.noise, terminal, window_over_photo])
def test_text_ui_flat_and_noise_do_not(make):
    for h, w in SIZES:
        px = make(h, w)
        assert not classify.lossy_pays(px), (make.__name__, w, h, classify.graduality(px))


def test_one_colour_and_too_small():
    flat = np.zeros((300, 400, 4), np.uint8)
    flat[...] = (200, 100, 50, 0)
    assert classify.graduality(flat) == 0.0  # every square one colour
    assert not classify.lossy_pays(flat)
    assert classify.graduality(images.photo(1, 500)) == 1.0  # no squares: as upstream
    # photo-like, but too small to be worth a lossy copy and its lossless resend
    assert classify.graduality(images.photo(48, 48)) < classify.PHOTO_SCORE
    assert not classify.lossy_pays(images.photo(48, 48))
    assert not classify.lossy_pays(images.photo(10, 1000))  # a side under MIN_SIDE
    assert classify.lossy_pays(images.photo(classify.MIN_SIDE, classify.MIN_PIXELS // classify.MIN_SIDE))


def test_gradients_go_lossy_only_where_jpeg_is_much_smaller_and_near_exact():
    """Gradients are borderline (docs/codecs.md): a shallow one has runs of equal pixels and
    stays lossless; a steep one, where every pixel is a new colour, goes lossy. Where the
    verdict is yes, the JPEG must be smaller than the LZ4 image and decode near exact."""
    verdicts = {}
    for h, w in ((768, 1024), (256, 256), (128, 128)):
        px = images.gradient(h, w)
        verdicts[(w, h)] = pays = classify.lossy_pays(px)
        if pays:
            jp = codecs.encode(codecs.JPEG, px)
            assert jp.nbytes < codecs.encode(codecs.LZ4, px).nbytes, (w, h)
            assert psnr(pillow_decode(jp.fields["data"].buf), px) >= 40, (w, h)
    assert verdicts[(1024, 768)] is False and verdicts[(128, 128)] is True


def test_the_x_byte_and_the_row_stride_do_not_matter():
    px = np.array(images.text_ui(200, 300))
    score = classify.graduality(px)
    px[..., 3] = np.random.default_rng(0).integers(0, 256, px.shape[:2])
    assert classify.graduality(px) == score
    frame = np.array(images.photo(400, 600))
    view = frame[50:350, 100:500]
    assert classify.graduality(view) == classify.graduality(np.ascontiguousarray(view))


def reference_score(pixels: np.ndarray) -> float:
    """Upstream's square score written out per square, on the classifier's sample points."""
    h, w = pixels.shape[:2]
    grid = classify._grid(h, w, w)  # contiguous rows: offsets are y * w + x
    total, pairs = 0.0, 0
    for corner in grid[0].ravel():
        y, x = divmod(int(corner), w)
        p = pixels[y, x, :3].astype(int)
        square, any_different = 0.0, False
        for q in (pixels[y, x + 1], pixels[y + 1, x], pixels[y + 1, x + 1]):
            d = np.abs(q[:3].astype(int) - p)
            if d.max() >= classify.CONTRAST:
                square += 1.0
            elif d.max() == 0:
                square += 0.5
            else:
                square -= 0.25
            any_different |= bool(d.any())
        total += square if any_different else 0.0
        pairs += 3
    return total / pairs


@pytest.mark.parametrize("make", [images.photo, images.text_ui, images.gradient, images.mostly_flat, images.noise])
def test_the_vectorised_score_equals_a_plain_loop(make):
    px = np.ascontiguousarray(make(120, 160))
    assert classify.graduality(px) == pytest.approx(reference_score(px), abs=1e-12)
