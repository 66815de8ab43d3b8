"""ryll (a Rust SPICE client, PyPI `ryll`, headless) against a real server, watched on the wire.

ryll advertises DISPLAY_CAP_PREF_COMPRESSION, a server cap that the Go client also sends;
it decodes LZ4, which a server that took every PREF_COMPRESSION client for the Go client
never sent it (issue 16 item 10). Here it links through a tap, and the images it is sent
are read from the bytes that crossed the wire.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import wait_until
from support.tap import WireTap

from spice_twisted.wire.enums import DisplayCap, ImageType

RYLL = shutil.which("ryll") or str(Path(sys.executable).parent / "ryll")


@pytest.fixture
def ryll(tmp_path):
    procs: list[subprocess.Popen] = []

    def start(port: int, *args: str) -> subprocess.Popen:
        if not Path(RYLL).exists():
            pytest.fail("ryll is not installed: run the README test command (pip install .[test])")
        log = open(tmp_path / f"ryll-{len(procs)}.log", "wb")  # noqa: SIM115 (closed with the process)
        p = subprocess.Popen(
            [RYLL, "--headless", "--direct", f"127.0.0.1:{port}", *args], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.parametrize("preferred", ["lz4", "auto-glz"])
def test_ryll_gets_lz4_though_it_advertises_pref_compression(spawn, ryll, preferred):
    server = spawn.server("--source", "demo")
    with WireTap(server.port) as tap:
        ryll(tap.port, "--preferred-compression", preferred)
        conn = tap.display(timeout=30)
        assert DisplayCap.PREF_COMPRESSION in conn.client_channel_caps and DisplayCap.LZ4_COMPRESSION in conn.client_channel_caps
        # The demo draws every second (its clock, the ball): images keep coming.
        wait_until(lambda: conn.image_types().get(ImageType.LZ4, 0) >= 3, timeout=30, what=f"LZ4 images to ryll ({conn.image_types()})")
        types = conn.image_types()
        assert ImageType.BITMAP not in types, types
