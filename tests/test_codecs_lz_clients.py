"""LZ (LZ_RGB) decoded by real spice-gtk clients exactly as the server holds the picture.

Each client connects through a wire tap: the client's decoded surface, the tap's own
decode of the bytes on the wire (tests/support/lz_decode.py) and the server's
framebuffer must agree pixel for pixel.
"""

from __future__ import annotations

import numpy as np
from support import images
from support.processes import as_rgb, wait_match, wait_until
from support.tapped import connect

from spice_twisted.wire.enums import ImageCompression, ImageType, MsgcDisplay

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
    """Draws px at (x, y) on the server; waits until every tap carried a draw there."""
    path = tmp_path / f"{name}.npy"
    np.save(path, px)
    marks = [c.mark() for c in conns]
    server.command(f"paste {path} {x} {y}", "paste")
    for c, m in zip(conns, marks, strict=True):
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
        assert _codec(server, conn) == "lz"

    text = images.text_ui(150, 280)  # flat backgrounds, anti-aliased glyphs: what LZ is for
    marks = _paste(server, conns, tmp_path, "text", text, 31, 17)
    _exact(server, clients, conns)
    assert np.array_equal(as_rgb(clients[1].framebuffer())[17:167, 31:311], text[..., [2, 1, 0]])
    for conn, mark in zip(conns, marks, strict=True):
        draws = [d for d in conn.draws(mark) if d.box[:2] == (31, 17)]
        assert {d.image_type for d in draws} == {LZ_RGB}, draws
        assert len(draws[0].payload) < text.nbytes / 4  # and it compresses text well


def test_a_client_preferring_lz_gets_lz(spawn, tap_for, random_image, tmp_path):
    """Under the default `auto` (LZ4 for spice-gtk), a client asking for LZ gets LZ; the other stays on LZ4."""
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    before = len(conns[0].client_messages)
    clients[0].send(f"compression {int(ImageCompression.LZ)}")
    conns[0].wait_for(
        lambda k: any(t == MsgcDisplay.PREFERRED_COMPRESSION for t, _ in k.client_messages[before:]),
        what="PREFERRED_COMPRESSION from the client",
    )
    wait_until(lambda: _codec(server, conns[0]) == "lz", what="codec lz for the first client")
    assert _codec(server, conns[1]) == "lz4"
    rng = np.random.default_rng(5)
    tile = images.text_ui(64, 200).copy()
    tile[20:40, 100:140, :3] = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # some noise in the text
    marks = _paste(server, conns, tmp_path, "tile", tile, 77, 55)
    _exact(server, clients, conns)
    assert set(_pixel_types(conns[0], marks[0])) == {LZ_RGB}
    assert set(_pixel_types(conns[1], marks[1])) == {ImageType.LZ4}
