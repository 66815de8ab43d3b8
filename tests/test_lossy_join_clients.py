"""A client allowed lossy that joins a still display converges to exact (issue 16, item 5).

The real server (`twistd spice`) serves a still photo-like picture; a spice-gtk client
joins through a wire tap. Its first screen comes as JPEG (seen on the wire), and with
nothing ever drawn again its decoded picture must become exactly the picture within a
few lossless_after (0.5 s by default) of joining: the lossless upgrade must not wait for
a frame that draws something. Odd sizes included (JPEG's 8- and 16-pixel blocks, the
upgrade's 32-pixel grid).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support.images import photo
from support.processes import as_rgb, mismatch, wait_until

from spice_twisted.wire.enums import ImageType


@pytest.mark.parametrize("size", [(1024, 768), (1023, 767), (4099, 17)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_lossy_client_joining_a_still_display_becomes_exact(spawn, tap_for, tmp_path, size):
    width, height = size
    rgb = np.ascontiguousarray(photo(height, width)[..., 2::-1])
    path = tmp_path / "still.png"
    Image.fromarray(rgb, "RGB").save(path)
    server = spawn.server("--source", f"image:{path}", "--jpeg-wan-compression", "always")
    tap, client = tap_for(server)
    client.wait_event("mark", timeout=30)
    conn = tap.display()
    conn.wait_for(lambda k: any(d.image_type == ImageType.JPEG for d in k.draws()), what="the first screen as JPEG")
    # Nothing draws on the display from here: only the upgrade can make the client exact.
    wait_until(lambda: mismatch(client, rgb) == 0, 30, "the joined client exact")
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)
    assert any(d.image_type != ImageType.JPEG for d in conn.draws())  # the lossless upgrade on the wire
