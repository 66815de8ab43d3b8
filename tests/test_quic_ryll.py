"""QUIC decoded by ryll, a second client with its own decoder (Rust; PyPI `ryll`).

spice-gtk is the reference (tests/test_quic_clients.py); ryll's QUIC decoder is an
independent reading of the same format. Run headless with its control socket, it
reports its decoded surface as RGBA (`screenshot`), which must equal the server's
framebuffer; its verbose log names the image type of every DRAW_COPY it decoded.
Skipped where the `ryll` binary is not installed (`pip install ryll`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import images
from support.processes import as_rgb, terminate, wait_until

RYLL = shutil.which("ryll", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(RYLL is None, reason="ryll is not installed (pip install ryll)")


class Ryll:
    """One headless ryll session, driven through its NDJSON control socket."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.sock_path = tmp / f"ryll-{port}.sock"
        self.log_path = tmp / f"ryll-{port}.log"
        argv = [RYLL, "--headless", "--direct", f"127.0.0.1:{port}", "--preferred-compression", "quic", "-v"]
        self.proc = subprocess.Popen(
            [*argv, "--control-socket", str(self.sock_path)], stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, cwd=tmp
        )
        wait_until(self.sock_path.exists, 20, "ryll's control socket")
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.sock_path))
        self.sock.settimeout(20)
        self.file = self.sock.makefile("rw")
        self.next_id = 0
        self.call("hello", client_name="spice-twisted tests", protocol_version="1.5")

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.file.write(json.dumps({"id": self.next_id, "method": method, "params": params}) + "\n")
        self.file.flush()
        while True:
            msg = json.loads(self.file.readline())
            if msg.get("id") == self.next_id:
                assert msg.get("ok"), msg
                return msg["result"]

    def surface(self) -> np.ndarray | None:
        """ryll's decoded primary surface as H x W x 3 RGB, or None before it has one."""
        status = self.call("status")
        surfaces = [s for s in status.get("surfaces", []) if s["surface_id"] == 0]
        if not surfaces:
            return None
        w, h = surfaces[0]["width"], surfaces[0]["height"]
        rgba = base64.b64decode(self.call("screenshot", surface_id=0, format="rgba")["data_base64"])
        return np.frombuffer(rgba, np.uint8).reshape(h, w, 4)[..., :3]

    def decoded_types(self) -> list[str]:
        """The image type of every DRAW_COPY ryll decoded, from its log."""
        return [
            line.split("type=Some(")[1].split(")")[0] for line in self.log_path.read_text().splitlines() if "draw_copy: surface=" in line
        ]

    def close(self) -> None:
        self.sock.close()
        terminate(self.proc)


def _equal_soon(ryll: Ryll, server, what: str) -> None:
    def same() -> bool:
        got, expect = ryll.surface(), as_rgb(server.framebuffer())
        return got is not None and got.shape == expect.shape and bool(np.array_equal(got, expect))

    wait_until(same, 30, f"ryll's surface equal to the server's ({what})")


@pytest.mark.parametrize("picture", ["random", "photo", "demo"])
def test_ryll_decodes_our_quic_exactly(spawn, tmp_path, random_image, picture):
    if picture == "demo":
        server = spawn.harness("--image-compression", "quic")
    else:
        if picture == "random":
            path, _ = random_image
        else:
            path = tmp_path / "photo.png"
            Image.fromarray(images.photo(480, 641)[..., 2::-1].copy(), "RGB").save(path)
        server = spawn.harness("--source", f"image:{path}", "--image-compression", "quic")
    ryll = Ryll(server.port, tmp_path)
    try:
        if picture == "demo":
            wait_until(lambda: len(ryll.decoded_types()) > 10, 30, "ten draws decoded by ryll")
            server.pause()
        _equal_soon(ryll, server, picture)
        types = ryll.decoded_types()
        assert types and set(types) == {"Quic"}, types
    finally:
        ryll.close()
