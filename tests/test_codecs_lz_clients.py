"""LZ (LZ_RGB) decoded by real spice-gtk clients exactly as the server holds the picture.

Each client connects through a wire tap: the client's decoded surface, the tap's own
decode of the bytes on the wire (tests/support/lz_decode.py) and the server's
framebuffer must agree pixel for pixel.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from support import images
from support.processes import as_rgb, wait_match, wait_until
from support.ryll import RyllClient, ryll_binary
from support.tapped import connect

from spice_twisted.wire.enums import ImageCompression, ImageType, MsgcDisplay, MsgDisplay

LZ_RGB = ImageType.LZ_RGB


def _exact(server, clients, conns) -> None:
    # Polls: a client may not have drawn what is on its way yet ("quiet" cannot tell).
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    fb = server.framebuffer()
    for conn in conns:
        screen = conn.screen()
        assert screen.fb is not None and np.array_equal(screen.fb[..., :3], fb[..., :3]), f"{conn}: the tap's decode differs"
        assert not conn.parse_errors


def _pixel_types(conn, start: int = 0) -> dict[int, int]:
    types = conn.image_types(start)
    types.pop(ImageType.FROM_CACHE, None)  # a repeat may go by reference whatever the codec
    return types


def _codec(server, conn) -> str:
    for c in server.stats()["clients"]:
        if c["id"] == conn.connection_id:
            return next(ch for ch in c["channels"] if ch["channel"] == "display")["codec"]
    raise AssertionError(f"no client {conn.connection_id:#x}")


def _paste(server, conns, tmp_path, name: str, px: np.ndarray, x: int, y: int) -> list[int]:
    """Draws px at (x, y) on the server; waits until every tap carried a draw there (a
    picture of one colour goes as a DRAW_FILL: then that)."""
    path = tmp_path / f"{name}.npy"
    np.save(path, px)
    marks = [c.mark() for c in conns]
    server.command(f"paste {path} {x} {y}", "paste")
    solid = bool((px.view(np.uint32) == px.view(np.uint32).flat[0]).all())
    for c, m in zip(conns, marks, strict=True):
        if solid:
            c.wait_for(lambda k, m=m: any(t == MsgDisplay.DRAW_FILL for t, _ in k.snapshot(m)), what=f"the {name} fill")
        else:
            c.wait_for(lambda k, m=m: any(d.box[:2] == (x, y) for d in k.draws(m)), what=f"the {name} draw")
    return marks


def test_image_compression_lz_sends_lz_that_spice_gtk_decodes_exactly(spawn, tap_for, random_image, tmp_path):
    path, rgb = random_image
    server = spawn.harness("--image-compression", "lz", "--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    _exact(server, clients, conns)
    assert np.array_equal(as_rgb(clients[0].framebuffer()), rgb)  # the noisy picture itself, every byte value
    for conn in conns:
        assert set(_pixel_types(conn)) == {LZ_RGB}, _pixel_types(conn)
        assert _codec(server, conn) == "lz_plt"  # spice-gtk: LZ_PLT where a picture has <= 16 colours

    text = images.text_ui(150, 280)  # flat backgrounds, anti-aliased glyphs: what LZ is for
    marks = _paste(server, conns, tmp_path, "text", text, 31, 17)
    _exact(server, clients, conns)
    assert np.array_equal(as_rgb(clients[1].framebuffer())[17:167, 31:311], text[..., [2, 1, 0]])
    for conn, mark in zip(conns, marks, strict=True):
        draws = [d for d in conn.draws(mark) if d.box[:2] == (31, 17)]
        assert {d.image_type for d in draws} == {LZ_RGB}, draws
        assert len(draws[0].payload) < text.nbytes / 4  # and it compresses text well


def test_a_client_preferring_lz_gets_lz(spawn, tap_for, random_image, tmp_path):
    """Under the default `auto_glz`, a client asking for LZ gets LZ; the other gets GLZ (a
    picture its dictionary generation takes) or LZ4 (its other codec on a LAN)."""
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    before = len(conns[0].client_messages)
    clients[0].send(f"compression {int(ImageCompression.LZ)}")
    conns[0].wait_for(
        lambda k: any(t == MsgcDisplay.PREFERRED_COMPRESSION for t, _ in k.client_messages[before:]),
        what="PREFERRED_COMPRESSION from the client",
    )
    wait_until(lambda: _codec(server, conns[0]) == "lz_plt", what="codec lz (lz_plt: spice-gtk) for the first client")
    assert _codec(server, conns[1]) in ("lz4", "lz_plt")  # its codec for what GLZ does not take: by link speed
    rng = np.random.default_rng(5)
    tile = images.text_ui(64, 200).copy()
    tile[20:40, 100:140, :3] = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # some noise in the text
    marks = _paste(server, conns, tmp_path, "tile", tile, 77, 55)
    _exact(server, clients, conns)
    assert set(_pixel_types(conns[0], marks[0])) == {LZ_RGB}
    assert set(_pixel_types(conns[1], marks[1])) <= {ImageType.GLZ_RGB, ImageType.LZ4, LZ_RGB}


@pytest.mark.parametrize("zlib_form, window", [(False, 0), (True, 100_000)], ids=["glz", "zlib-glz-small-window"])
def test_glz_across_images_decoded_exactly_by_spice_gtk(spawn, tap_for, random_image, tmp_path, zlib_form, window):
    """GLZ from one dictionary (the harness's scaffold: every client, ids in commit order):
    a repeat of an earlier picture and a scrolled one reference earlier images, cost a
    small part of the first encode, and spice-gtk decodes all of it exactly. With a
    100,000-pixel window the encoder drops the first two images on the way (the client
    frees them as the stream says) and nothing references them after."""
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}", paused=True)
    server.command(f"glz_everyone {int(zlib_form)} {window}", "glz_everyone")
    taps, clients, conns = connect(server, tap_for, 2)
    _exact(server, clients, conns)
    kind = ImageType.ZLIB_GLZ_RGB if zlib_form else ImageType.GLZ_RGB
    text = np.ascontiguousarray(images.text_ui(150, 280))
    edited = text.copy()  # the same picture with one pixel changed: no pixmap cache hit
    edited[75, 140, :3] = (1, 2, 3)
    sizes = {}
    for name, px, x, y in (
        ("text", text, 20, 10),
        ("noise", images.noise(40, 60), 200, 150),
        ("repeat", edited, 40, 60),  # (nearly) the same picture elsewhere
        ("scroll", np.ascontiguousarray(np.roll(text, -23, axis=0)), 30, 40),  # scrolled by 23 rows
    ):
        marks = _paste(server, conns, tmp_path, name, px, x, y)
        _exact(server, clients, conns)
        for conn, mark in zip(conns, marks, strict=True):
            draws = [d for d in conn.draws(mark) if d.box[:2] == (x, y)]
            # noise does not deflate: it goes as plain GLZ in either form
            assert {d.image_type for d in draws} == ({ImageType.GLZ_RGB} if name == "noise" else {kind}), draws
        sizes[name] = len(draws[0].payload)
    assert sizes["repeat"] < sizes["text"] / 8 and sizes["scroll"] < sizes["text"] / 4, sizes
    for conn in conns:
        assert kind in _pixel_types(conn) and set(_pixel_types(conn)) <= {ImageType.GLZ_RGB, kind}
        held = sorted(conn.screen().glz.images)  # the window a client keeps, as the stream says
        assert held[-1] == 4 and (held[0] == 2 if window else held[0] == 0), held


# ------------------------------------------------------------- ryll: a second decoder


@pytest.fixture
def ryll_for(tmp_path):
    if ryll_binary() is None:
        pytest.skip("ryll is not installed (scripts/setup.sh --test installs it)")
    made: list[RyllClient] = []

    def make(server, *args: str) -> RyllClient:
        made.append(RyllClient(server.port, tmp_path, *args))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _ryll_matches(server, client: RyllClient, what: str) -> None:
    def mismatch() -> int | str:
        got, want = client.rgb(), as_rgb(server.framebuffer())
        if got is None or got.shape != want.shape:
            return f"no surface of {want.shape} yet"
        return int(np.any(got != want, axis=2).sum())

    deadline = time.monotonic() + 30
    while (m := mismatch()) != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"ryll differs from the server's framebuffer after {what}: {m} ({client.log_path})")
        time.sleep(0.2)


@pytest.mark.parametrize("mode", ["lz", "glz", "zlib-glz"])
def test_ryll_decodes_our_lz_and_glz_exactly(spawn, ryll_for, random_image, tmp_path, mode):
    path, rgb = random_image
    server = spawn.harness("--image-compression", "lz", "--source", f"image:{path}", paused=True)
    if mode != "lz":
        server.command(f"glz_everyone {int(mode == 'zlib-glz')}", "glz_everyone")
    ryll = ryll_for(server, "--preferred-compression", "lz", "-v")
    _ryll_matches(server, ryll, "the first screen")
    assert np.array_equal(ryll.rgb(), rgb)
    text = np.ascontiguousarray(images.text_ui(150, 280))
    edited = text.copy()
    edited[70, 100, :3] = (9, 8, 7)
    for name, px, x, y in (("text", text, 20, 10), ("edited", edited, 40, 60), ("scroll", np.roll(text, -23, axis=0), 30, 40)):
        p = tmp_path / f"{name}.npy"
        np.save(p, np.ascontiguousarray(px))
        server.command(f"paste {p} {x} {y}", "paste")
        _ryll_matches(server, ryll, name)


def _hostile_sample(seed: int) -> list[np.ndarray]:
    """Small odd pictures that stress the encoder's edges: 1x1, one row, one column, runs
    broken by one pixel, two colours, noise, tiles, pixels differing only in X."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w, kind in (
        (1, 1, "noise"),
        (1, 97, "runs"),
        (61, 1, "few"),
        (3, 3, "uniform"),
        (37, 53, "tiles"),
        (64, 129, "noise"),
        (45, 77, "runs"),
        (29, 300, "few"),
        (50, 50, "x_only"),
        (120, 33, "tiles"),
    ):
        if kind == "noise":
            px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        elif kind == "uniform":
            px = np.full((h, w, 4), rng.integers(0, 256, 4, dtype=np.uint8), np.uint8)
        elif kind == "few":
            px = rng.integers(0, 2, (h, w, 4), dtype=np.uint8) * 255
        elif kind == "tiles":
            px = np.tile(rng.integers(0, 256, (3, 5, 4), dtype=np.uint8), (h // 3 + 1, w // 5 + 1, 1))[:h, :w]
        elif kind == "runs":
            px = np.full((h, w, 4), 40, np.uint8)
            px.reshape(-1, 4)[rng.integers(0, h * w, max(1, h * w // 40))] = rng.integers(0, 256, 4, dtype=np.uint8)
        else:
            px = np.zeros((h, w, 4), np.uint8)
            px[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)
        out.append(np.ascontiguousarray(px))
    return out


@pytest.mark.parametrize("mode", ["lz", "glz"])
def test_a_sample_of_hostile_pictures_through_spice_gtk(spawn, tap_for, random_image, tmp_path, mode):
    """The smaller sample of the hypothesis tests' pictures, decoded by spice-gtk itself."""
    path, _ = random_image
    server = spawn.harness("--image-compression", "lz", "--source", f"image:{path}", paused=True)
    if mode == "glz":
        server.command("glz_everyone 0 20000", "glz_everyone")  # a small window: evictions too
    taps, clients, conns = connect(server, tap_for, 1)
    rng = np.random.default_rng(11)
    for i, px in enumerate(_hostile_sample(3)):
        x, y = int(rng.integers(0, 333 - px.shape[1] + 1)), int(rng.integers(0, 217 - px.shape[0] + 1))
        _paste(server, conns, tmp_path, f"p{i}", px, x, y)
    _exact(server, clients, conns)
    # under lz, spice-gtk gets the pictures of <= 16 colours as LZ_PLT
    want = {ImageType.LZ_RGB, ImageType.LZ_PLT} if mode == "lz" else {ImageType.GLZ_RGB}
    assert set(_pixel_types(conns[0])) == want


def test_glz_far_references_decoded_by_spice_gtk(spawn, tap_for, tmp_path):
    """The longer forms of a GLZ reference, through spice-gtk: pixel offsets past 2^17
    into a 640x480 image, and image distances past 64 and 256 (after 300 small images)."""
    rng = np.random.default_rng(17)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    src = tmp_path / "noise.png"
    Image.fromarray(noise, "RGB").save(src)
    server = spawn.harness("--source", f"image:{src}", paused=True)
    server.command("glz_everyone 0", "glz_everyone")
    taps, clients, conns = connect(server, tap_for, 1)
    _exact(server, clients, conns)  # image 0: the whole screen
    for batch in range(10):  # images 1..300: small and all different, none drawn over another
        paths = []
        for k in range(30):
            i = 30 * batch + k
            tile = np.zeros((4, 4, 4), np.uint8)
            tile[..., 0], tile[..., 1], tile[0, 0, 2] = i % 256, i // 256, 200
            paths.append((tmp_path / f"t{i}.npy", (i % 30) * 20, 200 + batch * 8))
            np.save(paths[-1][0], tile)
        marks = [c.mark() for c in conns]
        for p, x, y in paths:
            server.command(f"paste {p} {x} {y}", "paste")
        conns[0].wait_for(lambda k, m=marks[0], xy=paths[-1][1:]: any(d.box[:2] == xy for d in k.draws(m)), what="the batch")
    bgrx = np.zeros((480, 640, 4), np.uint8)
    bgrx[..., :3] = noise[..., ::-1]
    sizes = {}
    for name, rows, x, y in (("short", slice(0, 6), 0, 300), ("long", slice(300, 360), 0, 380)):
        crop = np.ascontiguousarray(bgrx[rows])
        crop[2, 5, :3] ^= 0xFF  # not a pixmap-cache repeat of anything
        _paste(server, conns, tmp_path, name, crop, x, y)
        sizes[name] = [len(d.payload) for d in conns[0].draws() if d.box[:2] == (x, y)][-1]
        assert sizes[name] < crop.shape[0] * crop.shape[1] * 3 / 20, sizes  # it referenced image 0
    _exact(server, clients, conns)
    assert set(_pixel_types(conns[0])) == {ImageType.GLZ_RGB}
