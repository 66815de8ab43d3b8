"""spice-html5, the browser client, decodes what the server sends it exactly.

spice-html5 (Debian's package) runs in a real headless Chromium and reaches the server
through websockify on 127.0.0.1, with a wire tap between the bridge and the server:

    Chromium --ws--> websockify --tcp--> WireTap --> server (tests/support/server_harness.py)

spice-html5 decodes QUIC and LZ_RGB, and neither LZ4 nor GLZ (its DISPLAY_INIT gives a GLZ
window of 0), so a server that compresses for it must use those two. The tests read
spice-html5's canvas back (getImageData) and compare it with the server's framebuffer
pixel for pixel, read the tap to see which image types crossed the wire (QUIC and/or
LZ_RGB, no raw BITMAP where a codec shrinks the picture), and read spice-html5's own log:
no error, and no warning but its notes about messages it knowingly skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import html5, images
from support.pasting import paste_pictures
from support.processes import as_rgb, wait_match
from support.tap import TapConnection, WireTap
from test_codecs_quic import pictures
from test_pipeline_clients import assert_no_server_errors, encoded_types

from spice_twisted import codecs
from spice_twisted.wire.enums import ChannelType, ImageType, MsgcDisplay, MsgCursor, MsgDisplay
from spice_twisted.wire.messages import CLIENT, decode_body

QUIC, LZ_RGB, BITMAP = ImageType.QUIC, ImageType.LZ_RGB, ImageType.BITMAP
# The image types each setting may give spice-html5 (FROM_CACHE carries no pixels and is
# left out by encoded_types).
ALLOWED = {"default": {QUIC, LZ_RGB}, "quic": {QUIC}, "lz": {LZ_RGB}}
CODEC_OF = {QUIC: codecs.QUIC, LZ_RGB: codecs.LZ}
# spice-html5's known_unimplemented() notes for messages that draw nothing: the palette
# cache (html5 has none) and DISPLAY_MARK. Any other warning (an unhandled image type, a
# clip, a src_area offset, an unknown message) fails the test.
HARMLESS_WARNINGS = (
    f"Unimplemented function {int(MsgDisplay.INVAL_ALL_PALETTES)}(",
    f"Unimplemented function {int(MsgDisplay.MARK)}(",
    # No CURSOR_MOVE in spice-html5: in server mouse mode (an X display) the cursor it draws
    # stays where the pointer last set it; the pictures are not affected.
    f"Unimplemented function {int(MsgCursor.MOVE)}(",
)
# spice-html5 has no code for the record channel the server lists (for spice-gtk's
# microphone): it links the channel with a bare SpiceConn and logs this error; display and
# inputs are not affected. Any other error fails the test.
HARMLESS_ERRORS = ("Channel type record not implemented",)
DISPLAY_INIT = CLIENT[(ChannelType.DISPLAY, MsgcDisplay.INIT)]


def _args(compression: str) -> list[str]:
    return [] if compression == "default" else ["--image-compression", compression]


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator:
    """viewer(server) -> (Html5Viewer, TapConnection of its display channel); all stopped at the end."""
    missing = html5.missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {html5.INSTALL_HINT}")
    taps: list[WireTap] = []
    bridges: list[html5.Bridge] = []
    drivers: list = []

    def make(server) -> tuple[html5.Html5Viewer, TapConnection]:
        tap = WireTap(server.port)
        taps.append(tap)
        bridge = html5.Bridge(tap.port, tmp_path)
        bridges.append(bridge)
        drivers.append(html5.chromium(tmp_path / f"chromium-{len(drivers)}"))
        v = html5.Html5Viewer(drivers[-1], bridge)
        try:
            conn = tap.display(timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{v.diagnostics()}") from exc
        return v, conn

    yield make
    for d in drivers:
        d.quit()
    for b in bridges:
        b.stop()
    for t in taps:
        t.close()


def wait_exact(server, v: html5.Html5Viewer, what: str, timeout: float = 40.0) -> np.ndarray:
    """Until spice-html5's canvas equals the server's framebuffer (both re-read each time);
    returns that framebuffer as RGB."""
    return v.wait_exact(lambda: as_rgb(server.framebuffer()), f"the server ({what})", timeout)


def assert_html5_clean(v: html5.Html5Viewer) -> None:
    """spice-html5 connected, reported no error and warned about nothing it drew."""
    s = v.state()
    bad_errors = [e for e in s["log_err"] if e not in HARMLESS_ERRORS]
    assert s["connected"] and not s["errors"] and not bad_errors, v.diagnostics()
    bad = [w for w in s["log_warn"] if not w.startswith(HARMLESS_WARNINGS)]
    assert not bad, f"spice-html5 warned: {bad}"


def assert_html5_wire(conn: TapConnection, compression: str, start: int = 0) -> dict[int, int]:
    """The display connection is spice-html5's (mini headers, GLZ window 0), it got only the
    setting's image types, and every raw BITMAP (if any) is one our codec would not have
    shrunk: its pixels, as they crossed the wire, encoded again here."""
    assert conn.mini and not conn.parse_errors, conn.parse_errors
    inits = [decode_body(DISPLAY_INIT, b) for t, b in conn.client_messages if t == MsgcDisplay.INIT]
    assert inits and inits[0]["glz_dictionary_window_size"] == 0, inits
    types = encoded_types(conn, start)
    allowed = ALLOWED[compression]
    assert set(types) - {BITMAP} <= allowed, {ImageType(t).name: n for t, n in types.items()}
    assert set(types) & allowed, types
    assert_no_needless_bitmaps(conn, allowed, start)
    return types


def assert_no_needless_bitmaps(conn: TapConnection, allowed: set[int], start: int = 0) -> None:
    """Each raw BITMAP on the wire is one that none of the `allowed` codecs would shrink."""
    for d in conn.draws(start):
        if d.image_type == BITMAP:
            w, h = d.box[2] - d.box[0], d.box[3] - d.box[1]
            px = np.frombuffer(d.payload, np.uint8)[: w * h * 4].reshape(h, w, 4)
            best = min(codecs.ENCODERS[CODEC_OF[t]](px).nbytes for t in allowed)
            assert best >= len(d.payload), f"a raw {w}x{h} BITMAP ({len(d.payload)} B) where a codec gives {best} B"


def _picture(tmp_path: Path, kind: str, random_image) -> tuple[Path, np.ndarray]:
    if kind == "random":
        return random_image
    make = {"text_ui": lambda: images.text_ui(301, 457), "photo": lambda: images.photo(768, 1024)}[kind]
    rgb = make()[..., 2::-1].copy()
    path = tmp_path / f"{kind}.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path, rgb


@pytest.mark.parametrize("compression", ["default", "quic", "lz"])
@pytest.mark.parametrize("kind", ["random", "text_ui", "photo"])
def test_pictures_exact_in_spice_html5(spawn, viewer, tmp_path, random_image, kind, compression):
    """The noisy test picture (every byte value, odd sizes), a text/UI picture and a
    1024x768 photo-like one, each with the default setting (auto_glz), quic and lz:
    spice-html5's canvas is the picture, and the wire carried it compressed, not raw
    (auto: LZ for text, QUIC for the photo)."""
    path, rgb = _picture(tmp_path, kind, random_image)
    server = spawn.harness("--source", f"image:{path}", *_args(compression))
    v, conn = viewer(server)
    expect = wait_exact(server, v, f"{kind}, {compression}")
    assert np.array_equal(expect, rgb)  # the server shows the picture, and so does spice-html5
    types = assert_html5_wire(conn, compression)
    draws = [d for d in conn.draws() if d.image_type != ImageType.FROM_CACHE]
    assert BITMAP not in types and draws, types
    if compression == "default" and kind != "random":
        assert set(types) == {QUIC if kind == "photo" else LZ_RGB}, types
    for d in draws:  # of raw's 4 bytes a pixel: LZ gains little on a photo, QUIC much
        bound = {"random": 0.9, "text_ui": 0.25, "photo": 0.5 if d.image_type == QUIC else 0.9}[kind]
        area, n = (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), len(d.payload)
        assert n < bound * 4 * area, f"{ImageType(d.image_type).name}: {n} bytes for {area} pixels"
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_palette_pictures_go_lz_rgb_to_spice_html5(spawn, viewer, tmp_path):
    """A picture of 12 colours with a 2-colour band (what spice-gtk gets as LZ_PLT under
    `lz`): spice-html5, which has no LZ_PLT decoder, gets LZ_RGB and draws it exactly."""
    px = images.palette_picture(217, 333, 12)
    px[100:160] = images.palette_picture(60, 333, 2, seed=8)
    rgb = px[..., 2::-1].copy()
    path = tmp_path / "palette.png"
    Image.fromarray(rgb, "RGB").save(path)
    server = spawn.harness("--source", f"image:{path}", "--image-compression", "lz")
    v, conn = viewer(server)
    assert np.array_equal(wait_exact(server, v, "the palette picture"), rgb)
    types = assert_html5_wire(conn, "lz")
    assert set(types) == {LZ_RGB}, types
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_raw_bitmaps_when_compression_is_off(spawn, viewer, random_image):
    """The control: with `--image-compression off` the same tap sees raw BITMAPs (spice-html5
    still draws them exactly), so the checks above do tell a codec from raw."""
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}", "--image-compression", "off")
    v, conn = viewer(server)
    wait_exact(server, v, "raw bitmaps")
    assert set(encoded_types(conn)) == {BITMAP}, encoded_types(conn)
    with pytest.raises(AssertionError, match="raw 333x217 BITMAP"):
        assert_no_needless_bitmaps(conn, ALLOWED["default"])
    assert_html5_clean(v)


@pytest.mark.parametrize("compression", ["default", "quic", "lz"])
def test_live_demo_exact_in_spice_html5(spawn, viewer, compression):
    """The live demo (moving window, scrolling log: COPY_BITS, photos, text) drawn by
    spice-html5; once the demo is paused its canvas equals the server's framebuffer."""
    server = spawn.harness(*_args(compression))
    v, conn = viewer(server)
    conn.wait_for(
        lambda k: sum(t == MsgDisplay.COPY_BITS for t, _ in k.snapshot()) >= 3 and len(k.draws()) >= 60,
        timeout=90,
        what="the live demo's draws and copies",
    )
    server.pause()
    wait_exact(server, v, f"the paused demo, {compression}")
    types = assert_html5_wire(conn, compression)
    assert BITMAP not in types, types
    if compression == "default":  # auto: QUIC for the demo's photos, LZ for the rest
        assert types.get(QUIC, 0) >= 1 and types.get(LZ_RGB, 0) >= 10, types
    assert_html5_clean(v)
    assert_no_server_errors(server)


@pytest.mark.parametrize("compression", ["quic", "lz"])
def test_pasted_pictures_exact_in_spice_html5(spawn, viewer, tmp_path, compression):
    """Adversarial pictures (1x1 up to 200x200; noise, runs, stripes, gradients, extremes,
    one colour) pasted one by one on the served screen: spice-html5 shows exactly the
    server's framebuffer after every paste."""
    rgb = images.text_ui(360, 480)[..., 2::-1].copy()
    Image.fromarray(rgb, "RGB").save(tmp_path / "ui.png")
    server = spawn.harness("--source", f"image:{tmp_path / 'ui.png'}", *_args(compression))
    v, conn = viewer(server)
    wait_exact(server, v, "the first screen")
    start = conn.mark()
    pasted = paste_pictures(server, conn, pictures(max_side=200), 15, lambda what: wait_exact(server, v, what))
    assert len(pasted) >= 15
    # One colour goes as a solid DRAW_FILL, which spice-html5 draws too.
    mark = conn.mark()
    server.paste(np.broadcast_to(np.array([7, 200, 93, 0], np.uint8), (40, 50, 4)).copy(), 11, 13)
    conn.wait_for(lambda k: any(t == MsgDisplay.DRAW_FILL for t, _ in k.snapshot(mark)), what="a DRAW_FILL")
    wait_exact(server, v, "a solid 50x40 paste")
    assert_html5_wire(conn, compression, start)
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_html5_beside_a_glz_member(spawn, viewer, tap_for):
    """The default (auto_glz) with spice-gtk, which takes GLZ, and spice-html5, which does not,
    on the same live demo: spice-gtk gets GLZ, spice-html5 never does, both are exact."""
    server = spawn.harness()
    gtk_tap, gtk = tap_for(server)
    gtk.wait_event("mark", timeout=30)
    gtk_conn = gtk_tap.display()
    v, conn = viewer(server)
    conn.wait_for(lambda k: len(k.draws()) >= 40, timeout=90, what="40 draws to spice-html5")
    server.pause()
    gtk.wait_quiet(0.4)
    expect = wait_exact(server, v, "the paused demo beside spice-gtk")
    wait_match(lambda: as_rgb(server.framebuffer()), [gtk], "the paused demo")
    assert np.array_equal(as_rgb(gtk.framebuffer()), expect)
    assert ImageType.GLZ_RGB in encoded_types(gtk_conn), encoded_types(gtk_conn)
    types = assert_html5_wire(conn, "default")
    assert BITMAP not in types, types
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_resize_mid_session_in_spice_html5(spawn, viewer, random_image):
    """The screen changes size: spice-html5 replaces its canvas (SURFACE_DESTROY, then
    SURFACE_CREATE) and shows the picture tiled on the new size exactly, compressed."""
    path, rgb = random_image
    server = spawn.harness("--source", f"image:{path}")
    v, conn = viewer(server)
    wait_exact(server, v, "the first screen")
    for w, h in ((500, 300), (800, 600), (200, 100)):
        mark = conn.mark()
        r = server.command(f"resize {w} {h}", "resize")
        assert (r.get("width"), r.get("height")) == (w, h), r
        expect = wait_exact(server, v, f"after a resize to {w}x{h}")
        reps = (-(-h // rgb.shape[0]), -(-w // rgb.shape[1]), 1)
        assert np.array_equal(expect, np.tile(rgb, reps)[:h, :w])
        types = [t for t, _ in conn.snapshot(mark)]
        assert types.index(MsgDisplay.SURFACE_DESTROY) < types.index(MsgDisplay.SURFACE_CREATE), types
        assert BITMAP not in assert_html5_wire(conn, "default", mark)
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_lossy_demo_converges_in_spice_html5(spawn, viewer):
    """With `--jpeg-wan-compression always` the demo's photos reach spice-html5 as JPEG (which
    it draws asynchronously, on the image's load); once the demo is paused the lossless
    upgrade (QUIC) makes its canvas exactly the server's framebuffer."""
    server = spawn.harness("--jpeg-wan-compression", "always")
    v, conn = viewer(server)
    conn.wait_for(lambda k: any(d.image_type == ImageType.JPEG for d in k.draws()) and len(k.draws()) >= 60, timeout=90, what="JPEG")
    server.pause()
    wait_exact(server, v, "the paused lossy demo, upgraded")
    types = encoded_types(conn)
    assert types.get(ImageType.JPEG, 0) >= 1 and types.get(QUIC, 0) >= 1 and BITMAP not in types, types
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_default_setting_on_the_live_demo_gets_lz_quic_and_fills_exactly(spawn, viewer):
    """Under the default auto_glz spice-html5 (no LZ4 cap, GLZ window 0) gets LZ_RGB for
    synthetic pictures, QUIC for photos and DRAW_FILL for one colour (a square pasted on
    the running demo), and draws all of it exactly: no GLZ, no LZ4, no raw bitmaps."""
    server = spawn.harness()
    v, conn = viewer(server)
    conn.wait_for(lambda k: len(k.draws()) >= 20, timeout=60, what="20 draws to spice-html5")
    server.paste(np.broadcast_to(np.array([40, 90, 200, 0], np.uint8), (50, 70, 4)).copy(), 300, 200)
    server.pause()
    wait_exact(server, v, "the paused demo with a pasted square")
    types = assert_html5_wire(conn, "default")
    assert LZ_RGB in types and BITMAP not in types, types
    assert any(t == MsgDisplay.DRAW_FILL for t, _ in conn.snapshot())
    assert_html5_clean(v)
    assert_no_server_errors(server)
