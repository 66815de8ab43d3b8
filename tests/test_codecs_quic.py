"""The QUIC codec in process: payload layout, exact round trips through our decoder, bad input.

Our decoder (codecs/_native/quic.c `decode`) is a second reading of the format; what
spice-gtk makes of the same bytes is tests/test_quic_clients.py. Hypothesis drives both
kinds of input: random sizes from 1x1 up, strided and flipped views, and the contents that
take the coder down its different paths (noise, flat runs, repeated rows, gradients,
few colours, rows longer than the 2048-pixel steps of its wait mask).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import images
from support.display_decode import Screen

from spice_twisted import codecs
from spice_twisted.channels.display import draw_copy_parts
from spice_twisted.codecs import quic
from spice_twisted.codecs._native import _quic
from spice_twisted.render.drawable import Drawable
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import ChannelType, ImageType, MsgDisplay
from spice_twisted.wire.messages import decode_body, encode_body, message
from spice_twisted.wire.schema import External

MAGIC, RGB32, RGBA = 0x43495551, 4, 5


def assert_round_trip(px: np.ndarray, alpha: bool = False) -> bytes:
    data = _quic.encode(px, alpha=alpha)
    assert len(data) % 4 == 0 and data[-4:] == b"\0\0\0\0"  # whole words, the read-ahead word last
    # the encoder reserves 96 bits a pixel per row (128 with alpha): never more is written
    assert len(data) <= 20 + (16 if alpha else 12) * px.shape[0] * px.shape[1] + 8
    got_alpha, w, h, out = _quic.decode(data)
    assert (got_alpha, w, h) == (alpha, px.shape[1], px.shape[0])
    out = np.frombuffer(out, np.uint8).reshape(h, w, 4)
    if alpha:
        assert np.array_equal(out, px)
    else:
        assert np.array_equal(out[..., :3], px[..., :3]) and not out[..., 3].any()  # X is not sent, decodes as 0
    return data


@pytest.mark.parametrize("kind", sorted(images.KINDS))
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (75, 130), (300, 2500)], ids=lambda s: f"{s[1]}x{s[0]}")
def test_every_kind_round_trips(kind, size):
    px = images.KINDS[kind](*size) if min(size) >= 16 else np.random.default_rng(5).integers(0, 256, (*size, 4), np.uint8)
    payload = codecs.encode(codecs.QUIC, px)
    assert payload.codec == "quic" and payload.image_type == ImageType.QUIC and set(payload.fields) == {"data"}
    data = payload.fields["data"]
    assert isinstance(data, External) and payload.nbytes == 4 + len(data.buf)
    assert struct.unpack_from("<5I", data.buf) == (MAGIC, 0, RGB32, size[1], size[0])
    assert data.buf == assert_round_trip(px)
    assert np.array_equal(quic.decode(data.buf)[..., :3], px[..., :3])
    assert_round_trip(px, alpha=True)


def test_it_compresses_like_upstream():
    """About 1.5 bytes a pixel on photos (upstream's figure), far less on flat content."""
    per_pixel = {k: len(_quic.encode(images.KINDS[k](480, 640))) / (480 * 640) for k in images.KINDS}
    assert per_pixel["photo"] < 1.8, per_pixel
    assert per_pixel["mostly_flat"] < 0.1 and per_pixel["gradient"] < 0.6, per_pixel
    assert per_pixel["noise"] < 3.2, per_pixel  # incompressible: 3 of 4 bytes, a little over


def test_rgba_keeps_alpha_and_says_so():
    px = images.photo(64, 96).copy()
    px[..., 3] = np.arange(96, dtype=np.uint8)[None, :]
    data = assert_round_trip(px, alpha=True)
    assert struct.unpack_from("<3I", data) == (MAGIC, 0, RGBA)
    assert len(data) > len(_quic.encode(px))  # the alpha plane costs its own bits


@pytest.mark.parametrize("shape", [(4096, 4096), (1, 70000), (9000, 1)], ids=["4096x4096", "wide", "tall"])
def test_big_and_extreme_shapes(shape):
    rng = np.random.default_rng(7)
    if shape == (4096, 4096):
        for px in (np.full((*shape, 4), 77, np.uint8), rng.integers(0, 256, (*shape, 4), np.uint8)):
            assert_round_trip(px)
        return
    px = rng.integers(0, 256, (*shape, 4), np.uint8)
    px[:, : shape[1] // 2] //= 64  # few values, then noise
    assert_round_trip(px)
    assert_round_trip(px, alpha=True)


def test_strided_flipped_and_read_only_views_encode_like_their_copies():
    frame = images.photo(300, 400)
    for view in (frame[37:237, 51:331], frame[::-1], frame[::2], frame[:, ::3]):
        assert quic.encode(view).fields["data"].buf == quic.encode(np.ascontiguousarray(view)).fields["data"].buf
    ro = np.frombuffer(frame.tobytes(), np.uint8).reshape(frame.shape)
    assert not ro.flags.writeable
    assert_round_trip(ro)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 5, 4), np.uint8),
        np.zeros((5, 0, 4), np.uint8),
        np.zeros((5, 5, 3), np.uint8),
        np.zeros((5, 5), np.uint8),
        np.zeros((5, 5, 4), np.uint16),
        np.zeros((5, 5, 4), np.uint8)[:, ::2],  # the C takes pixels side by side only
        b"\0" * 100,
    ],
    ids=["no-rows", "no-columns", "3-bytes", "2-d", "uint16", "column-stride", "bytes"],
)
def test_bad_pixels_are_a_clear_error(bad):
    with pytest.raises(ValueError, match="QUIC"):
        _quic.encode(bad)


def test_decoder_refuses_malformed_data():
    good = _quic.encode(images.photo(40, 50))
    for bad, why in (
        (good[:-8], "corrupt"),  # cut short
        (b"XXXX" + good[4:], "magic"),
        (good[:8] + struct.pack("<I", 3) + good[12:], "type"),
        (good[:12] + struct.pack("<2I", 0, 40) + good[20:], "size"),
        (good[:12] + struct.pack("<2I", 50, 4_000_000) + good[20:], "short"),
        (good[:22], "whole words"),
    ):
        with pytest.raises(ValueError, match=why):
            _quic.decode(bad)


@settings(max_examples=150, deadline=None)
@given(header=st.sampled_from([(RGB32, 7, 5), (RGBA, 3, 11), (RGB32, 40, 3)]), body=st.binary(min_size=0, max_size=400))
def test_decoder_survives_garbage(header, body):
    """Random words after a valid header: an image or ValueError, never a crash or a hang."""
    data = struct.pack("<5I", MAGIC, 0, *header) + body[: len(body) // 4 * 4]
    try:
        _quic.decode(data)
    except ValueError:
        pass


@st.composite
def pictures(draw, max_side: int = 96):
    """An image and a view of it with odd strides, its content built to take every path."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "uniform", "few", "rows", "gradient", "stripes", "extremes"]))
    if kind == "noise":
        px = rng.integers(0, 256, (h, w, 4), np.uint8)
    elif kind == "uniform":
        px = np.broadcast_to(rng.integers(0, 256, 4, np.uint8), (h, w, 4)).copy()
    elif kind == "few":  # runs of equal pixels that start and stop anywhere
        palette = rng.integers(0, 256, (draw(st.integers(1, 4)), 4), np.uint8)
        px = palette[rng.integers(0, len(palette), (h, w))]
    elif kind == "rows":  # rows repeating the row above, partly
        px = np.repeat(rng.integers(0, 256, (1, w, 4), np.uint8), h, axis=0)
        px[rng.random(h) < 0.3, : rng.integers(0, w + 1)] = rng.integers(0, 256, 4, np.uint8)
    elif kind == "gradient":
        y, x = np.mgrid[0:h, 0:w]
        px = np.stack([(x * 3) % 256, (y * 5) % 256, (x + y) % 256, x % 7], axis=-1).astype(np.uint8)
    elif kind == "stripes":
        px = np.zeros((h, w, 4), np.uint8)
        px[:, :: draw(st.integers(1, 5))] = 255
    else:  # the largest errors in every direction: 0 next to 255
        px = (rng.integers(0, 2, (h, w, 1), np.uint8) * 255).repeat(4, axis=2)
    # odd strides: a window inside a larger frame, maybe flipped
    pad_y, pad_x = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    frame = rng.integers(0, 256, (h + pad_y, w + pad_x, 4), np.uint8)
    frame[pad_y:, pad_x:] = px
    view = frame[pad_y:, pad_x:]
    if draw(st.booleans()):
        frame[pad_y:, pad_x:] = px[::-1]
        view = frame[pad_y:, pad_x:][::-1]
    return view


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(px=pictures(), alpha=st.booleans())
def test_hypothesis_round_trip(px, alpha):
    assert_round_trip(px, alpha)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(px=pictures(max_side=2600))
def test_hypothesis_round_trip_large(px):
    """Rows past 2048 pixels: the wait mask widens in the middle of a row."""
    assert_round_trip(px)


def test_draw_copy_with_a_quic_image_through_the_schema():
    h, w = 120, 170
    px = images.photo(h, w)
    drawable = Drawable(0, 0, Rect(30, 20, 30 + w, 20 + h), px, pool=None)  # type: ignore[arg-type]
    drawable.payloads[codecs.QUIC] = codecs.encode(codecs.QUIC, px)
    head, tail = draw_copy_parts(drawable, codecs.QUIC, image_id=0x77, image_flags=0)
    assert tail == drawable.payloads[codecs.QUIC].fields["data"].buf
    image = decode_body(message(ChannelType.DISPLAY, "DRAW_COPY"), head + tail)["src_bitmap"]
    assert image["type"] == ImageType.QUIC and (image["width"], image["height"]) == (w, h)
    assert int.from_bytes(head[-4:], "little") == len(tail)  # the u32 data_size spice-common reads
    screen = Screen()
    create = encode_body(
        message(ChannelType.DISPLAY, "SURFACE_CREATE"), {"surface_id": 0, "width": 320, "height": 240, "format": 32, "flags": 1}
    )
    screen.feed([(MsgDisplay.SURFACE_CREATE, create), (MsgDisplay.DRAW_COPY, head + tail)])
    assert screen.image_types == {ImageType.QUIC: 1}
    assert np.array_equal(screen.fb[20 : 20 + h, 30 : 30 + w, :3], px[..., :3])
