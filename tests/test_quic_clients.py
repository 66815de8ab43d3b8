"""QUIC images decoded by real spice-gtk clients exactly as the server holds them.

spice-gtk's QUIC decoder (spice-common quic.c) is the reference for our encoder: any bit
out of place desynchronises its adaptive model, and the picture (or the channel) breaks.
Each client connects through a wire tap, so the test also sees that the images on the
wire really are QUIC and that our own decoder reads them the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support import images
from support.pasting import paste_pictures
from support.processes import as_rgb, wait_match
from support.tapped import connect
from test_codecs_quic import pictures
from test_pipeline_clients import assert_exact, display_stats, draw_for_a_while, encoded_types, switch

from spice_twisted.wire.enums import ImageCompression, ImageType

QUIC = ImageType.QUIC


def _serve_picture(spawn, tap_for, path, n: int = 1, *server_args: str):
    server = spawn.harness("--source", f"image:{path}", *server_args)
    taps, clients, conns = connect(server, tap_for, n)
    for c in clients:
        c.wait_quiet(0.3)
    return server, clients, conns


@pytest.mark.parametrize("picture", ["random", "photo"])
def test_pictures_through_spice_gtk_exact(spawn, tap_for, tmp_path, random_image, picture):
    """The noisy test image (every byte value, odd sizes) and a photo-like gradient image."""
    if picture == "random":
        path, rgb = random_image
    else:
        rgb = images.photo(480, 641)[..., 2::-1].copy()
        path = tmp_path / "photo.png"
        Image.fromarray(rgb, "RGB").save(path)
    server, clients, conns = _serve_picture(spawn, tap_for, path, 2, "--image-compression", "quic")
    expect = assert_exact(server, clients, conns)
    h, w = rgb.shape[:2]
    assert np.array_equal(expect[:h, :w], rgb)  # the server shows the picture (tiled on its surface) ...
    assert np.array_equal(as_rgb(clients[0].framebuffer())[:h, :w], rgb)  # ... and so does spice-gtk
    for conn in conns:
        assert set(encoded_types(conn)) == {QUIC}, encoded_types(conn)
        assert display_stats(server, conn.connection_id)["codec"] == "quic"
        assert not conn.parse_errors
        quic_bytes = sum(len(d.payload) for d in conn.draws())
        area = sum((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in conn.draws())
        if picture == "photo":
            assert quic_bytes < 2.0 * area, (quic_bytes, area)  # it compresses: raw is 4 bytes a pixel
    assert "Traceback" not in clients[0].stderr()


def test_live_demo_through_spice_gtk_exact(spawn, tap_for):
    """The demo keeps drawing (moving shapes, text, gradients): every update QUIC, all exact."""
    server = spawn.harness("--image-compression", "quic")
    taps, clients, conns = connect(server, tap_for, 2)
    draw_for_a_while(server, clients, 2.0)
    assert_exact(server, clients, conns)
    for conn in conns:
        types = encoded_types(conn)
        assert set(types) == {QUIC} and types[QUIC] > 10, types
        assert not conn.parse_errors


def test_a_client_preferring_quic_gets_quic(spawn, tap_for):
    """Server on auto (LZ4 for spice-gtk); the client's DISPLAY_PREFERRED_COMPRESSION QUIC wins."""
    server = spawn.harness()
    (tap,), (client,), (conn,) = connect(server, tap_for, 1)
    server.pause()
    client.wait_quiet(0.4)
    switch(server, client, conn, ImageCompression.QUIC, "quic")
    mark = conn.mark()
    server.resume()
    conn.wait_for(lambda k: len(k.draws(mark)) >= 10, what="10 draws after the switch")
    server.pause()
    client.wait_quiet(0.4)
    assert set(encoded_types(conn, mark)) == {QUIC}, encoded_types(conn, mark)
    assert_exact(server, [client], [conn])


def test_hypothesis_pictures_through_spice_gtk(spawn, tap_for, tmp_path):
    """A sample of the in-process test's adversarial pictures (sizes from 1x1, odd strides,
    runs, gradients, noise), each pasted on the served screen and sent as QUIC: spice-gtk
    shows exactly the server's framebuffer after every one."""
    rgb = images.photo(360, 480)[..., 2::-1].copy()
    Image.fromarray(rgb, "RGB").save(tmp_path / "photo.png")
    server, (client,), (conn,) = _serve_picture(spawn, tap_for, tmp_path / "photo.png", 1, "--image-compression", "quic")
    start = conn.mark()
    pasted = paste_pictures(
        server,
        conn,
        pictures(max_side=300),
        20,
        lambda what: wait_match(lambda: as_rgb(server.framebuffer()), [client], f"the server after {what}"),
    )
    assert len(pasted) >= 20
    types = encoded_types(conn, start)  # a paste the client's pixmap cache holds goes as FROM_CACHE
    assert set(types) == {QUIC}, types
    # Each paste went as QUIC, unless one colour (a DRAW_FILL) or a repeat (FROM_CACHE):
    # how many of each depends on the pictures Hypothesis drew.
    carried = [set(p.types) for p in pasted if not p.fill and ImageType.FROM_CACHE not in p.types]
    assert carried and all(t == {QUIC} for t in carried), pasted


def test_one_quic_encode_per_drawable_for_all_clients(spawn, tap_for):
    """Three QUIC clients: each drawable is QUIC-encoded once (counted at codecs.ENCODERS),
    and every connection carries the same bytes for the same image."""
    server = spawn.harness("--image-compression", "quic", paused=True)
    server.command("count_codecs", "count_codecs")
    taps, clients, conns = connect(server, tap_for, 3, "--cache-size", "0")
    for c in clients:
        c.wait_quiet(0.4)
    before = server.command("codec_calls", "codec_calls")["calls"].get("quic", 0)
    r0 = server.stats()["render"]
    marks = [conn.mark() for conn in conns]
    draw_for_a_while(server, clients, 2.0)
    assert_exact(server, clients, conns)
    calls = server.command("codec_calls", "codec_calls")["calls"]["quic"] - before
    r1 = server.stats()["render"]
    drawables, snapshots = r1["drawables"] - r0["drawables"], r1["snapshots"] - r0["snapshots"]
    assert drawables > 20, r1
    assert drawables <= calls <= drawables + snapshots, (calls, drawables, snapshots)  # not 3x
    by_id: dict[int, bytes] = {}
    for conn, mark in zip(conns, marks, strict=True):
        for d in conn.draws(mark):
            assert d.image_type == QUIC
            assert by_id.setdefault(d.image_id, d.payload) == d.payload, d.image_id
    assert len(set(by_id.values())) <= calls
