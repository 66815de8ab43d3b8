"""LZ_PLT (palette) images decoded by a real spice-gtk client exactly.

Pictures of 2 colours (LZ_PLT1_BE, 8 pixels a byte) and of 12 (LZ_PLT4_BE, 2 a byte), at
odd widths (13 and 1001 pixels: the packed rows end in a partly used byte), are drawn
under `--image-compression lz`; spice-gtk's surface, the tap's own decode of the wire
(tests/support/lz_decode.py) and the server's framebuffer must agree pixel for pixel,
and the wire must have carried LZ_PLT, smaller than LZ_RGB32 would have been.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from support.images import palette_picture
from support.processes import as_rgb, wait_match
from support.tapped import connect

from spice_twisted.codecs import lz
from spice_twisted.wire.enums import ImageType


def test_spice_gtk_decodes_lz_plt1_and_plt4_at_odd_widths_exactly(spawn, tap_for, tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "bg.png"
    Image.fromarray(rng.integers(0, 256, (120, 1040, 3), dtype=np.uint8), "RGB").save(src)
    server = spawn.harness("--image-compression", "lz", "--source", f"image:{src}", paused=True)
    taps, clients, conns = connect(server, tap_for, 1)
    conn = conns[0]
    pictures = [
        (palette_picture(7, 13, 2, 1), 5, 3, 2),
        (palette_picture(9, 13, 12, 2), 30, 3, 4),
        (palette_picture(40, 1001, 2, 3), 17, 20, 2),
        (palette_picture(50, 1001, 12, 4), 3, 65, 4),
    ]
    for i, (px, x, y, _bits) in enumerate(pictures):
        path = tmp_path / f"p{i}.npy"
        np.save(path, px)
        mark = conn.mark()
        server.command(f"paste {path} {x} {y}", "paste")
        conn.wait_for(lambda k, m=mark, x=x, y=y: any(d.box[:2] == (x, y) for d in k.draws(m)), what=f"picture {i}")
        draws = [d for d in conn.draws(mark) if d.box[:2] == (x, y)]
        assert [d.image_type for d in draws] == [ImageType.LZ_PLT], draws
        lz_type = int.from_bytes(draws[0].payload[8:12], "big")
        assert lz_type == {2: 2, 4: 4}[pictures[i][3]]  # PLT1_BE for 2 colours, PLT4_BE for 12
        assert len(draws[0].payload) < len(lz.encode(px).fields["data"])  # smaller than LZ_RGB32
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    fb = server.framebuffer()
    screen = conn.screen()
    assert screen.fb is not None and np.array_equal(screen.fb[..., :3], fb[..., :3]), "the tap's decode differs"
    assert not conn.parse_errors
    decoded = as_rgb(clients[0].framebuffer())
    for px, x, y, _ in pictures:
        h, w = px.shape[:2]
        assert np.array_equal(decoded[y : y + h, x : x + w], px[..., [2, 1, 0]])  # spice-gtk drew the palette picture
