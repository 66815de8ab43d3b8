"""QUIC decoded by ryll, a second client with its own decoder (Rust; PyPI `ryll`).

spice-gtk is the reference (tests/test_quic_clients.py); ryll's QUIC decoder is an
independent reading of the same format. Run headless with its control socket, it
reports its decoded surface (`screenshot`, tests/support/ryll.py), which must equal the server's
framebuffer; its verbose log names the image type of every DRAW_COPY it decoded.
The test extras install it (`pip install .[test]`).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support import images
from support.processes import as_rgb, wait_until
from support.ryll import INSTALL_HINT, RyllClient, ryll_binary


def _equal_soon(ryll: RyllClient, server, what: str) -> None:
    def same() -> bool:
        got, expect = ryll.rgb(), as_rgb(server.framebuffer())
        return got is not None and got.shape == expect.shape and bool(np.array_equal(got, expect))

    wait_until(same, 30, f"ryll's surface equal to the server's ({what})")


@pytest.mark.parametrize("picture", ["random", "photo", "demo"])
def test_ryll_decodes_our_quic_exactly(spawn, tmp_path, random_image, picture):
    if ryll_binary() is None:
        pytest.fail(INSTALL_HINT)
    if picture == "demo":
        server = spawn.harness("--image-compression", "quic")
    else:
        if picture == "random":
            path, _ = random_image
        else:
            path = tmp_path / "photo.png"
            Image.fromarray(images.photo(480, 641)[..., 2::-1].copy(), "RGB").save(path)
        server = spawn.harness("--source", f"image:{path}", "--image-compression", "quic")
    ryll = RyllClient(server.port, tmp_path, "--preferred-compression", "quic", "-v")
    try:
        if picture == "demo":
            wait_until(lambda: len(ryll.decoded_types()) > 10, 30, "ten draws decoded by ryll")
            server.pause()
        _equal_soon(ryll, server, picture)
        types = ryll.decoded_types()
        assert types and set(types) == {"Quic"}, types
    finally:
        ryll.close()
