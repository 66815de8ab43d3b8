"""The LZ and GLZ encoders (our C extension) under hypothesis: any input either encodes
to a stream our own decoder (support/lz_decode.py) turns back into the same B,G,R pixels,
or is refused with a clear ValueError. spice-gtk decodes them in test_codecs_lz_clients.py
(LZ_PLT: test_codecs_lz_plt_clients.py).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import images
from support.display_decode import Screen
from support.inprocess import held_drawable
from support.lz_decode import GlzWindow, SpiceGtkGlzWindow, decode_lz, decode_lz_plt

from spice_twisted import codecs
from spice_twisted.channels.display import draw_copy_parts
from spice_twisted.codecs import glz, lz
from spice_twisted.codecs._native import load
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import ChannelType, ImageType, MsgDisplay
from spice_twisted.wire.messages import decode_body, encode_body, message

_lz = load("_lz")


def bgr(px: np.ndarray) -> np.ndarray:
    """What a client holds: B, G, R as sent, X = 0."""
    out = np.array(px, np.uint8, copy=True)
    out[..., 3] = 0
    return out


@st.composite
def pictures(draw, max_side: int = 96) -> np.ndarray:
    """Screen-like and hostile content: uniform, noise, few colours, repeated tiles and
    rows, long runs broken by one pixel; sometimes as a view with a row stride."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["uniform", "noise", "few", "tiles", "rows", "runs", "x_only"]))
    if kind == "uniform":
        px = np.full((h, w, 4), rng.integers(0, 256, 4, dtype=np.uint8), np.uint8)
    elif kind == "noise":
        px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    elif kind == "few":
        palette = rng.integers(0, 256, (draw(st.integers(1, 4)), 4), dtype=np.uint8)
        px = palette[rng.integers(0, len(palette), (h, w))]
    elif kind == "tiles":
        th, tw = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        tile = rng.integers(0, 256, (th, tw, 4), dtype=np.uint8)
        px = np.tile(tile, (h // th + 1, w // tw + 1, 1))[:h, :w]
    elif kind == "rows":
        row = rng.integers(0, 3, (1, w, 4), dtype=np.uint8) * 120
        px = np.repeat(row, h, axis=0)
    elif kind == "runs":
        px = np.zeros((h, w, 4), np.uint8)
        flat = px.reshape(-1, 4)
        flat[rng.integers(0, h * w, max(1, h * w // 50))] = rng.integers(0, 256, 4, dtype=np.uint8)
    else:  # pixels that differ only in the X byte: equal as far as a client can tell
        px = np.zeros((h, w, 4), np.uint8)
        px[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)
    px = np.ascontiguousarray(px)
    if draw(st.booleans()):  # the same picture inside a larger frame: rows farther apart
        extra = draw(st.integers(1, 7))
        frame = rng.integers(0, 256, (h + 2, w + extra, 4), dtype=np.uint8)
        left = draw(st.integers(0, extra))
        frame[1 : h + 1, left : left + w] = px
        px = frame[1 : h + 1, left : left + w]
    return px


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pictures())
def test_lz_round_trips_any_picture(px):
    payload = lz.encode(px)
    data = payload.fields["data"].buf
    assert payload.image_type == ImageType.LZ_RGB and payload.nbytes == 4 + len(data)
    assert np.array_equal(decode_lz(data), bgr(px))
    assert len(data) <= 28 + px.shape[0] * px.shape[1] * 3 * 33 // 32 + 2  # never much beyond raw B,G,R


@pytest.mark.parametrize(
    "shape,kind",
    [
        ((4096, 4096), "uniform"),
        ((4096, 4096), "noise"),
        ((1, 4096), "noise"),
        ((4096, 1), "text"),
        ((2160, 3840), "text"),
        ((2160, 3840), "gradient"),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v,
)
def test_lz_large_pictures(shape, kind):
    h, w = shape
    if kind == "uniform":
        px = np.full((h, w, 4), 200, np.uint8)
    elif kind == "noise":
        px = np.random.default_rng(9).integers(0, 256, (h, w, 4), dtype=np.uint8)
    elif kind == "gradient":  # repeats a few rows up, found through the hash chain's ring
        px = images.gradient(h, w)
    else:
        px = np.ascontiguousarray(np.tile(images.text_ui(270, 480), (h // 270 + 1, w // 480 + 1, 1))[:h, :w])
    data = lz.encode(px).fields["data"].buf
    assert np.array_equal(decode_lz(data), bgr(px))
    if kind == "uniform":
        assert len(data) < 100 + h * w / 255  # one run: the format's length bytes, one per 255 pixels


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), np.uint8),  # not 4 bytes a pixel
        np.zeros((4, 4, 4), np.uint16),  # not bytes
        np.zeros((4, 16), np.uint8),  # not (h, w, 4)
        np.zeros((0, 4, 4), np.uint8),  # empty
        np.zeros((4, 8, 4), np.uint8)[:, ::2],  # pixels not adjacent in a row
        np.zeros((4, 4, 4), np.uint8)[::-1],  # rows backwards
        np.zeros((1, 16385, 4), np.uint8),  # wider than any surface we serve
    ],
    ids=["3-bytes", "uint16", "2d", "empty", "column-stride", "negative-stride", "too-wide"],
)
def test_lz_refuses_what_it_cannot_encode(bad):
    with pytest.raises(ValueError):
        lz.encode(bad)
    with pytest.raises(ValueError):
        glz.GlzEncoder(1 << 20).encode(bad, 0)


def test_lz_refuses_non_buffers():
    with pytest.raises(TypeError):
        lz.encode("pixels")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(images.KINDS))
def test_lz_every_image_kind_round_trips(kind):
    px = np.ascontiguousarray(images.KINDS[kind](768, 1024))
    data = lz.encode(px).fields["data"].buf
    assert np.array_equal(decode_lz(data), bgr(px))


def test_lz_finds_a_gradients_repeats_rows_up():
    """A diagonal gradient repeats itself exactly a few rows up (here 3 rows and 4 pixels
    back), not one row up: the matcher must look past the newest repeat of a triple.
    Upstream's encoder writes 0.051 bytes a pixel here; ours wrote 0.248 with the newest
    candidate alone."""
    px = images.gradient(768, 1024)
    data = lz.encode(px).fields["data"].buf
    assert np.array_equal(decode_lz(data), bgr(px))
    assert len(data) < 0.03 * 768 * 1024


def test_lz_pays_on_screen_content():
    px = images.text_ui(400, 600)
    data = lz.encode(px).fields["data"].buf
    assert len(data) < px.nbytes / 8


def test_lz_through_draw_copy_and_the_schema():
    h, w = 120, 150
    px = images.text_ui(h, w)
    rect = Rect(10, 5, 10 + w, 5 + h)
    drawable = held_drawable(rect, px, {codecs.LZ: codecs.encode(codecs.LZ, px)})
    head, tail = draw_copy_parts(drawable, codecs.LZ, image_id=7, image_flags=0)
    fields = decode_body(message(ChannelType.DISPLAY, "DRAW_COPY"), head + tail)
    assert fields["src_bitmap"]["type"] == ImageType.LZ_RGB and fields["src_bitmap"]["data"] == tail
    screen = Screen()
    create = encode_body(
        message(ChannelType.DISPLAY, "SURFACE_CREATE"), {"surface_id": 0, "width": 200, "height": 150, "format": 32, "flags": 1}
    )
    screen.feed([(MsgDisplay.SURFACE_CREATE, create), (MsgDisplay.DRAW_COPY, head + tail)])
    assert screen.fb is not None and np.array_equal(screen.fb[5 : 5 + h, 10 : 10 + w, :3], px[..., :3])


# ---------------------------------------------------------------------------- LZ_PLT


@st.composite
def palette_pictures(draw, max_side: int = 96) -> np.ndarray:
    """Pictures of 1 to 18 colours (X bytes random: they do not count), terminal-like or
    scattered, at any width (rows pack to bytes), sometimes with a row stride."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    colours = draw(st.integers(1, 18))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        px = images.palette_picture(h, w, min(colours, h * w), seed=int(rng.integers(0, 1 << 30))).copy()
    else:
        pal = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
        px = pal[rng.integers(0, colours, (h, w)) if draw(st.booleans()) else np.zeros((h, w), np.intp) + rng.integers(0, colours, (1, w))]
    px[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)
    if draw(st.booleans()):
        frame = np.zeros((h, w + 3, 4), np.uint8)
        frame[:, 1 : w + 1] = px
        px = frame[:, 1 : w + 1]
    return px


def _colours(px: np.ndarray) -> int:
    return len(np.unique(np.ascontiguousarray(px).view("<u4").reshape(-1) & 0xFFFFFF))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(palette_pictures())
def test_lz_plt_round_trips_palette_pictures(px):
    """<= 16 colours: LZ_PLT1_BE (<= 2) or PLT4_BE, decoded by ours to the same B,G,R;
    more: None (and the lz_plt codec then sends LZ_RGB)."""
    n = _colours(px)
    r = _lz.encode_lz_plt(px)
    if n > 16:
        assert r is None
        assert codecs.encode(codecs.LZ_PLT, px).image_type == ImageType.LZ_RGB
        return
    lz_type, data, palette = r
    assert lz_type == (2 if n <= 2 else 4) and len(palette) == 4 * max(n, 2)
    assert np.array_equal(decode_lz_plt(data, palette), bgr(px))
    h, w = px.shape[:2]
    stride = (w * (1 if n <= 2 else 4) + 7) // 8
    assert len(data) <= 28 + stride * h * 33 // 32 + 2  # never much beyond the packed indices


def test_lz_plt_large_and_cheaper_than_lz_rgb_on_text():
    px = images.palette_picture(2160, 3840, 2)
    lz_type, data, palette = _lz.encode_lz_plt(px)
    assert lz_type == 2 and np.array_equal(decode_lz_plt(data, palette), bgr(px))
    assert len(data) < 0.5 * len(lz.encode(px).fields["data"])
    px = images.palette_picture(1001, 1001, 16)
    lz_type, data, palette = _lz.encode_lz_plt(px)
    assert lz_type == 4 and np.array_equal(decode_lz_plt(data, palette), bgr(px))
    assert _lz.encode_lz_plt(images.text_ui(100, 200)) is None  # anti-aliased text: too many colours


def test_lz_plt_refuses_what_lz_refuses():
    with pytest.raises(ValueError):
        _lz.encode_lz_plt(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        _lz.encode_lz_plt(np.zeros((1, 16385, 4), np.uint8))


def test_lz_plt_through_draw_copy_and_the_schema():
    """The palette goes after the shared stream: the DRAW_COPY decodes (pointer and all)
    and draws the picture."""
    h, w = 30, 1001
    px = images.palette_picture(h, w, 12)
    rect = Rect(3, 4, 3 + w, 4 + h)
    payload = codecs.encode(codecs.LZ_PLT, px)
    assert payload.image_type == ImageType.LZ_PLT
    drawable = held_drawable(rect, px, {codecs.LZ_PLT: payload})
    head, tail = draw_copy_parts(drawable, codecs.LZ_PLT, image_id=7, image_flags=0)
    assert len(tail) == payload.nbytes - 9  # the rest (flags, data_size, the pointer) is in the head
    fields = decode_body(message(ChannelType.DISPLAY, "DRAW_COPY"), head + tail)
    plt = fields["src_bitmap"]["lz_plt"]
    assert plt["palette"]["num_ents"] == 12 and tail.startswith(plt["data"])
    screen = Screen()
    create = encode_body(
        message(ChannelType.DISPLAY, "SURFACE_CREATE"), {"surface_id": 0, "width": 1010, "height": 40, "format": 32, "flags": 1}
    )
    screen.feed([(MsgDisplay.SURFACE_CREATE, create), (MsgDisplay.DRAW_COPY, head + tail)])
    assert screen.fb is not None and np.array_equal(screen.fb[4 : 4 + h, 3 : 3 + w, :3], px[..., :3])


# ---------------------------------------------------------------------------- GLZ


@st.composite
def glz_sequences(draw):
    """A sequence of images, many repeating or shifting earlier ones, with for each the
    lowest id the receiving clients hold (min_ref_id), and a window that may evict."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 12))
    base = [draw(pictures(48)) for _ in range(draw(st.integers(1, 3)))]
    seq = []
    for _ in range(n):
        op = draw(st.sampled_from(["new", "repeat", "crop", "scroll"]))
        src = base[int(rng.integers(0, len(base)))]
        if op == "new":
            px = draw(pictures(48))
            base.append(px)
        elif op == "repeat":
            px = src
        elif op == "crop":
            h, w = src.shape[:2]
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            px = src[y:, x:]
        else:
            px = np.roll(src, int(rng.integers(1, 5)), axis=0)
        seq.append(px)
    gaps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))  # ids grow, not always by one
    window = draw(st.sampled_from([1, 500, 3000, 1 << 20]))
    return seq, gaps, window


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(glz_sequences(), st.data())
def test_glz_round_trips_and_never_references_below_min_ref_id(case, data):
    seq, gaps, window = case
    enc = glz.GlzEncoder(window)
    sent: dict[int, np.ndarray] = {}  # what a client holding everything has decoded
    image_id = 0
    for px, gap in zip(seq, gaps, strict=True):
        image_id += gap
        min_ref = data.draw(st.integers(0, image_id))
        payload = enc.encode(px, image_id, min_ref)
        assert payload.image_type == ImageType.GLZ_RGB
        assert enc.last_oldest_ref is None or min_ref <= enc.last_oldest_ref < image_id
        assert enc.pixels <= max(window, px.shape[0] * px.shape[1])  # memory stays bounded by the window
        # A client that holds only the images from min_ref on (joined late, or missed one)
        # decodes it; a reference to anything else would raise (spice-gtk would hang).
        client = GlzWindow()
        client.images = {k: v for k, v in sent.items() if k >= min_ref}
        got_id, got = client.decode(payload.fields["data"].buf)
        assert got_id == image_id and np.array_equal(got, bgr(px))
        sent[image_id] = got.view("<u4").reshape(-1)
        # win_head_dist: the client may free what the encoder no longer holds, never more
        assert min(client.images) >= min(enc.image_ids)
        assert enc.image_ids[-1] == image_id


def test_glz_window_frees_what_the_encoder_drops():
    """One client decoding every image, freeing images as the stream says: exact throughout,
    and its window stays as small as the encoder's."""
    enc, client = glz.GlzEncoder(3 * 100 * 100), SpiceGtkGlzWindow()
    tiles = [images.text_ui(100, 100, seed=s) for s in range(4)]
    for i in range(40):
        px = tiles[i % 4] if i % 3 else np.roll(tiles[i % 4], i, axis=1)
        image_id, got = client.decode(enc.encode(px, i).fields["data"].buf)
        assert image_id == i and np.array_equal(got, bgr(px))
        assert sorted(client.images) == enc.image_ids == list(range(max(0, i - 2), i + 1))


def test_glz_repeat_of_an_earlier_image_costs_a_small_fraction():
    enc = glz.GlzEncoder()
    px = images.text_ui(300, 400)
    first = enc.encode(px, 0).nbytes
    other = enc.encode(images.photo(200, 200), 1).nbytes
    again = enc.encode(px, 2, min_ref_id=0)
    n = px.shape[0] * px.shape[1]
    assert enc.last_ref_pixels > 0.95 * n and enc.last_oldest_ref == 0
    # the format's floor: a match's length takes a byte per 255 pixels
    assert again.nbytes < n / 255 + 400 and again.nbytes < first / 20, (first, again.nbytes, other)
    alone = enc.encode(px, 3, min_ref_id=3)  # nothing earlier may be used: as costly as the first
    assert enc.last_ref_pixels == 0 and enc.last_oldest_ref is None
    assert alone.nbytes > first * 0.9
    scrolled = enc.encode(np.roll(px, -37, axis=0), 4)  # text scrolled by 37 rows
    assert scrolled.nbytes < first / 10, (first, scrolled.nbytes)


def test_glz_a_scroll_goes_on_where_the_last_image_left_off():
    """A window scrolled by 16 rows a frame: each frame repeats all but its last 16 rows
    of the one before, shifted as the last one was. The encoder starts each image at the
    alignment the last one ended on (otherwise it begins with the newest repeat of a
    triple, which on text is seldom the aligned one: 7 KB a frame instead of 2.4)."""
    page = images.text_ui(600 + 12 * 16, 800)
    enc, win = glz.GlzEncoder(), GlzWindow()
    sizes = []
    for i in range(12):
        px = np.ascontiguousarray(page[i * 16 : i * 16 + 600])
        payload = enc.encode(px, i)
        _, got = win.decode(payload.fields["data"].buf)
        assert np.array_equal(got, bgr(px))
        sizes.append(payload.nbytes)
    assert max(sizes[1:]) < 4000, sizes  # the 16 new rows (about 1.5 KB) and the references


def test_glz_finds_a_gradients_repeats_rows_up():
    """GLZ searches one image as LZ does: a hash chain through the image (and on into the
    window). Without it GLZ took the newest repeat of a triple only, and the gradient's
    exact repeats a few rows up were missed (0.34 bytes a pixel against LZ's 0.014)."""
    px = images.gradient(768, 1024)
    payload = glz.GlzEncoder().encode(px, 0)
    _, got = GlzWindow().decode(payload.fields["data"].buf)
    assert np.array_equal(got, bgr(px))
    assert payload.nbytes < 0.03 * 768 * 1024


def test_glz_within_one_image_no_worse_than_lz_plus_its_longer_codes():
    """Alone, a GLZ image costs what LZ's does but for the byte or so more per match its
    code takes (an image distance), or less (it reaches farther back in the image)."""
    for kind in ("text_ui", "gradient", "mostly_flat"):
        px = images.KINDS[kind](480, 640)
        g, lz_bytes = glz.GlzEncoder().encode(px, 0).nbytes, lz.encode(px).nbytes
        assert g < 1.35 * lz_bytes, (kind, g, lz_bytes)


def test_glz_a_window_dragged_over_a_desktop_decodes_exactly():
    """Each frame is a window at a new place with the desktop around it: references into
    the frame before (at the alignment the last one ended on) then runs and rows up in
    this one. A run candidate tried after such a reference once took a pixel that was
    not a repeat (the window's first row decoded wrong)."""
    desk, win = images.mostly_flat(768, 1024), images.text_ui(240, 320, seed=7)
    enc, client = glz.GlzEncoder(), GlzWindow()
    for i in range(12):
        x, y = 40 + 23 * i, 30 + 11 * i
        frame = np.array(desk[y - 8 : y + 248, x - 8 : x + 328])
        frame[8:248, 8:328] = win
        _, got = client.decode(enc.encode(frame, i).fields["data"].buf)
        assert np.array_equal(got, bgr(frame)), i


def test_glz_goes_on_past_4_billion_pixels():
    """The dictionary's hash table holds positions in 32 bits past an epoch, moved up (and
    the table rebased) before the window's positions would pass 2^32 -- after 4 billion
    pixels, minutes of a busy display: images that reference the ones before them decode
    exactly on both sides of that move. (The dictionary starts just short of it.)"""
    side = 512
    tile = images.text_ui(side, side)
    frames = [np.ascontiguousarray(np.roll(tile, 16 * k, axis=0)) for k in range(4)]
    d = load("_lz").GlzDictionary(2 * side * side, first_position=2**32 - 5 * side * side)
    client = GlzWindow()
    for i in range(12):
        px = frames[i % 4]
        _, got = client.decode(d.encode(px, i))
        assert np.array_equal(got, bgr(px)), i
        if i:
            assert d.last_ref_pixels > 0.9 * side * side, i  # the one before, scrolled
    # and a picture alone (no earlier image allowed) finds its own repeats as in a new
    # dictionary: the table's positions past 2^32 still say where they are
    alone = d.encode(tile, 12, min_ref_id=12)
    assert len(alone) == len(load("_lz").GlzDictionary(2 * side * side).encode(tile, 0))


def test_glz_ids_must_grow():
    enc = glz.GlzEncoder(1000)
    px = np.zeros((2, 2, 4), np.uint8)
    enc.encode(px, 5)
    for bad in (5, 4, 2**39):
        with pytest.raises(ValueError):
            enc.encode(px, bad)
    enc.encode(px, 6)
    assert enc.last_id == 6
    for bad_window in (0, 2**30 + 1):  # the window and an image stay below 2^32 positions
        with pytest.raises(ValueError):
            glz.GlzEncoder(bad_window)


def test_glz_encodes_without_the_gil_and_one_at_a_time():
    """While one thread encodes a large image, this thread runs (the GIL is released) and a
    second encode on the same dictionary is refused rather than interleaved."""
    enc = glz.GlzEncoder(1 << 25)
    big = np.random.default_rng(1).integers(0, 256, (4096, 4096, 4), dtype=np.uint8)
    t = threading.Thread(target=enc.encode, args=(big, 1))
    t.start()
    seen_busy = False
    while t.is_alive() and not seen_busy:
        seen_busy = enc.busy
    if seen_busy:
        with pytest.raises(RuntimeError):
            enc.encode(np.zeros((1, 1, 4), np.uint8), 2)
    t.join()
    assert seen_busy, "never saw the encode running: the GIL was held throughout"
    assert not enc.busy and enc.last_id == 1
    enc.encode(np.zeros((1, 1, 4), np.uint8), 2)  # and it goes on
    assert enc.image_ids == [1, 2]


def test_zlib_glz_round_trip_and_schema():
    enc, client = glz.GlzEncoder(), GlzWindow()
    px = images.text_ui(200, 300)
    payload = enc.encode(px, 0)
    z = glz.zlib_glz(payload)
    assert z is not None and z.image_type == ImageType.ZLIB_GLZ_RGB
    assert z.fields["glz_data_size"] == len(payload.fields["data"].buf) and z.nbytes == 8 + len(z.fields["data"].buf)
    assert z.nbytes < payload.nbytes
    rect = Rect(0, 0, 300, 200)
    drawable = held_drawable(rect, px, {"zlib_glz": z})
    head, tail = draw_copy_parts(drawable, "zlib_glz", image_id=1, image_flags=0)
    image = decode_body(message(ChannelType.DISPLAY, "DRAW_COPY"), head + tail)["src_bitmap"]
    assert image["type"] == ImageType.ZLIB_GLZ_RGB and image["glz_data_size"] == z.fields["glz_data_size"]
    glz_data = glz.unzlib_glz(image["data"], image["glz_data_size"])
    assert glz_data == payload.fields["data"].buf
    assert np.array_equal(client.decode(glz_data)[1], bgr(px))
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    assert glz.zlib_glz(enc.encode(noise, 1)) is None  # deflate cannot shrink noise: GLZ as is


def test_a_missing_extension_says_what_to_run():
    from spice_twisted.codecs import _native

    with pytest.raises(ImportError, match=r"_native\._nothing is not built: run scripts/setup.sh"):
        _native.load("_nothing")
    assert _native.load("_lz") is _lz


@pytest.mark.parametrize("first", [0, 1000])
def test_spice_gtk_window_needs_ids_from_zero(first):
    """Our model of spice-gtk's window (support/lz_decode.py) shows what real spice-gtk
    did (tests/test_codecs_lz_clients.py scaffold): ids from 0 decode throughout, ids from
    1000 empty slots still referenced after the 16th image."""
    enc, client = glz.GlzEncoder(), SpiceGtkGlzWindow()
    text = images.text_ui(60, 100)
    failed = None
    for i in range(40):
        px = text.copy()
        px[i % 60, i, :3] = (i, 2, 3)  # each image one pixel off the last: it references it
        try:
            client.decode(enc.encode(px, first + i).fields["data"].buf)
        except ValueError as e:
            failed = (i, str(e))
            break
    if first == 0:
        assert failed is None
        assert len(client.images) == 40 and len(client.slots) == 64  # nothing dropped: the window holds all
    else:
        assert failed is not None and "not in the window" in failed[1], failed
