"""ryll (PyPI `ryll`, a Rust SPICE client with its own LZ and GLZ decoders) as a second,
independent decoder of our images.

It runs headless with a control socket (NDJSON requests {"id", "method", "params"});
its `screenshot` method returns the decoded primary surface as a PNG, which is how a test
reads back what it drew; with -v its log names the image type of every DRAW_COPY it decoded.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .processes import terminate

INSTALL_HINT = "ryll is not installed: run the README test command (pip install .[test])"


def ryll_binary() -> str | None:
    beside = Path(sys.executable).parent / "ryll"  # pip installs it into the venv's bin
    return str(beside) if beside.exists() else shutil.which("ryll")


class RyllClient:
    """One headless ryll connected to 127.0.0.1:port."""

    def __init__(self, port: int, tmp: Path, *args: str) -> None:
        binary = ryll_binary()
        if binary is None:
            raise FileNotFoundError("ryll is not installed (scripts/setup.sh --test installs it)")
        self.sock_path = tmp / f"ryll-{port}-{time.monotonic_ns()}.sock"
        self.log_path = self.sock_path.with_suffix(".log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115  (closed in close())
        argv = [binary, "--direct", f"127.0.0.1:{port}", "--headless", "--control-socket", str(self.sock_path), *args]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        self._ids = 0
        deadline = time.monotonic() + 30
        while not self.sock_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"ryll did not open its control socket: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.sock_path))
        self.file = self.sock.makefile("rwb")
        hello = self.call("hello", {"client_name": "spice-twisted tests", "protocol_version": "1.5"})
        assert "screenshot" in hello["supported_methods"], hello

    def call(self, method: str, params: dict) -> dict:
        self._ids += 1
        self.file.write((json.dumps({"id": self._ids, "method": method, "params": params}) + "\n").encode())
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if reply.get("id") == self._ids:  # (events carry no id)
                break
        if not reply.get("ok"):
            raise AssertionError(f"ryll {method}: {reply}")
        return reply["result"]

    def rgb(self) -> np.ndarray | None:
        """The decoded primary surface as (h, w, 3) RGB, or None before there is one."""
        try:
            r = self.call("screenshot", {"surface_id": 0})
        except AssertionError:
            return None
        png = Image.open(io.BytesIO(base64.b64decode(r["data_base64"])))
        return np.asarray(png.convert("RGB"))

    def decoded_types(self) -> list[str]:
        """The image type of every DRAW_COPY ryll decoded ("Quic", "Lz", ...), from its log;
        only when started with -v."""
        text = self.log_path.read_text(errors="replace")
        return [line.split("type=Some(")[1].split(")")[0] for line in text.splitlines() if "draw_copy: surface=" in line]

    def close(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.close()
        terminate(self.proc)
        self.log.close()
