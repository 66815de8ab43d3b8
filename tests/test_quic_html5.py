"""QUIC decoded by spice-html5 (its own JavaScript decoder) in a real headless Chromium.

spice-html5 is what browser consoles run; it decodes no LZ4, so QUIC is its lossless
codec. The Debian package's files are served, with the WebSocket bridge, by websockify
(both installed by the README test command); the bridge reaches the server through a
wire tap, so the test sees that the images really went as QUIC. The browser's canvas
(read back with getImageData) must equal the server's framebuffer exactly.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import images
from support.processes import as_rgb, free_port, terminate, wait_until
from support.tap import WireTap
from test_admin_browser import browser  # noqa: F401  (the headless Chromium fixture)
from test_pipeline_clients import encoded_types

from spice_twisted.wire.enums import ImageType

HTML5 = Path("/usr/share/spice-html5")
WEBSOCKIFY = shutil.which("websockify")
INSTALL_HINT = "run the README test command (scripts/test.sh), which installs spice-html5 and websockify"

READ_CANVAS = """
const c = document.getElementById('spice_surface_0');
if (!c) return null;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let s = '';
for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
return [c.width, c.height, btoa(s)];
"""


@pytest.fixture
def bridge(tmp_path):
    """bridge(port) -> the port of a websockify serving spice-html5 and bridging to `port`."""
    if not (HTML5 / "spice_auto.html").exists() or WEBSOCKIFY is None:
        pytest.fail(f"spice-html5 or websockify is not installed: {INSTALL_HINT}")
    procs: list[subprocess.Popen] = []

    def start(target_port: int) -> int:
        port = free_port()
        log = (tmp_path / f"websockify-{port}.log").open("w")
        argv = [WEBSOCKIFY, "--web", str(HTML5), f"127.0.0.1:{port}", f"127.0.0.1:{target_port}"]
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 20, "websockify listening")
        return port

    yield start
    for p in procs:
        terminate(p)


def canvas(driver) -> np.ndarray | None:
    """spice-html5's primary surface as H x W x 3 RGB, or None before there is one."""
    got = driver.execute_script(READ_CANVAS)
    if not got:
        return None
    w, h, data = got
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(h, w, 4)[..., :3]


@pytest.mark.parametrize("picture", ["random", "photo", "demo"])
def test_spice_html5_decodes_our_quic_exactly(spawn, browser, bridge, tmp_path, random_image, picture):  # noqa: F811
    if picture == "demo":
        server = spawn.harness("--image-compression", "quic")
    else:
        if picture == "random":
            path, _ = random_image
        else:
            path = tmp_path / "photo.png"
            Image.fromarray(images.photo(300, 401)[..., 2::-1].copy(), "RGB").save(path)
        server = spawn.harness("--source", f"image:{path}", "--image-compression", "quic")
    with WireTap(server.port) as tap:
        port = bridge(tap.port)
        browser.get(f"http://127.0.0.1:{port}/spice_auto.html?host=127.0.0.1&port={port}")
        if picture == "demo":  # let it draw a while, then hold still
            tap.display().wait_for(lambda k: len(k.draws()) >= 20, 30, "20 draws to spice-html5")
            server.pause()
        expect = as_rgb(server.framebuffer())

        def same() -> bool:
            got = canvas(browser)
            return got is not None and got.shape == expect.shape and bool(np.array_equal(got, expect))

        wait_until(same, 30, f"spice-html5's canvas equal to the server's framebuffer ({picture})")
        conn = tap.display()
        types = encoded_types(conn)
        assert set(types) == {ImageType.QUIC}, types  # no LZ4 cap, no raw bitmaps: QUIC it is
        assert not conn.parse_errors
