"""The codec policy with real spice-gtk clients, watched on the wire through taps.

- A picture of one colour goes as DRAW_FILL (no image at all) and spice-gtk draws it.
- Under the default `--image-compression auto_glz`, a client on a LAN that decodes LZ4
  gets LZ4 for synthetic pictures and QUIC for photo-like ones; clients that prefer
  another compression (spice-gtk's `preferred-compression`) get it: LZ, QUIC, raw.
  Every client ends exact on the live demo and on a photo, and each picture is encoded
  once per codec, however many clients use that codec (counted at codecs.ENCODERS).
"""

from __future__ import annotations

import numpy as np
from support import images
from support.processes import as_rgb, wait_match
from support.tapped import connect
from test_pipeline_clients import assert_exact, draw_for_a_while, encoded_types, switch

from spice_twisted.wire.enums import ChannelType, ImageCompression, ImageType, MsgDisplay
from spice_twisted.wire.messages import SERVER, decode_body

DRAW_FILL = SERVER[(ChannelType.DISPLAY, MsgDisplay.DRAW_FILL)]


def _exact(server, clients, conns) -> None:
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    assert_exact(server, clients, conns)


def test_one_colour_goes_as_draw_fill_and_spice_gtk_draws_it(spawn, tap_for, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    square = np.zeros((60, 90, 4), np.uint8)
    square[...] = (30, 140, 250, 0)  # B, G, R, X
    npy = tmp_path / "square.npy"
    np.save(npy, square)
    marks = [c.mark() for c in conns]
    server.command(f"paste {npy} 40 30", "paste")
    for conn, mark in zip(conns, marks, strict=True):
        conn.wait_for(lambda k, m=mark: any(t == MsgDisplay.DRAW_FILL for t, _ in k.snapshot(m)), what="a DRAW_FILL")
    _exact(server, clients, conns)
    for conn, mark in zip(conns, marks, strict=True):
        fills = [decode_body(DRAW_FILL, b) for t, b in conn.snapshot(mark) if t == MsgDisplay.DRAW_FILL]
        assert len(fills) == 1 and fills[0]["color"] & 0xFFFFFF == 0xFA8C1E, fills
        assert fills[0]["box"] == {"top": 30, "left": 40, "bottom": 90, "right": 130}
        assert not conn.draws(mark)  # no image for it
    fb = as_rgb(clients[0].framebuffer())
    assert np.all(fb[30:90, 40:130] == (250, 140, 30))


def test_each_client_gets_its_codec_encoded_once_for_all(spawn, tap_for, tmp_path):
    server = spawn.harness("--source", "demo", paused=True)  # all connect before the first frame
    taps, clients, conns = connect(server, tap_for, 5)
    # Two keep the default (auto_glz: GLZ from one shared dictionary, QUIC for photos, LZ4
    # for what the dictionary does not take), the others prefer LZ, QUIC and none.
    wanted = [None, None, (ImageCompression.LZ, "lz_plt"), (ImageCompression.QUIC, "quic"), (ImageCompression.OFF, "bitmap")]
    for client, conn, want in zip(clients, conns, wanted, strict=True):
        if want is not None:
            switch(server, client, conn, want[0], want[1])
    server.command("count_codecs", "count_codecs")
    marks = [c.mark() for c in conns]
    draw_for_a_while(server, clients, 2.0)
    photo = images.photo(200, 300)
    npy = tmp_path / "photo.npy"
    np.save(npy, photo)
    server.command(f"paste {npy} 100 100", "paste")
    _exact(server, clients, conns)
    types = [encoded_types(conn, mark) for conn, mark in zip(conns, marks, strict=True)]
    for t in types[:2]:
        # (LZ where the loopback link measured under LZ4_MIN_BPS: a loaded machine)
        assert set(t) <= {ImageType.GLZ_RGB, ImageType.LZ4, ImageType.LZ_RGB, ImageType.QUIC} and ImageType.GLZ_RGB in t, t
        assert ImageType.QUIC in t  # the photo: QUIC under auto_glz
    assert set(types[2]) <= {ImageType.LZ_RGB, ImageType.LZ_PLT} and ImageType.LZ_RGB in types[2], types[2]  # LZ: spice-gtk takes LZ_PLT
    assert set(types[3]) == {ImageType.QUIC}, types[3]
    assert set(types[4]) == {ImageType.BITMAP}, types[4]
    calls = server.command("codec_calls", "codec_calls")["calls"]
    # Once per codec for all: the two default clients' GLZ images come from one encoder, each
    # image encoded once for both (counted at GlzEncoder.encode).
    glz_draws = [
        len([d for d in conn.draws(mark) if d.image_type == ImageType.GLZ_RGB]) for conn, mark in zip(conns[:2], marks[:2], strict=True)
    ]
    assert glz_draws[0] == glz_draws[1] > 0
    per_encoder = [v for k, v in calls.items() if k.startswith("glz:")]
    assert len(per_encoder) == 1 and per_encoder[0] >= glz_draws[0] and calls["glz"] < sum(glz_draws), (calls, glz_draws)
