"""--max-surface: no source chooses how much memory the server and every client spend.

A VM (a scripted upstream SPICE server, tests/support/spice_peer.py: QEMU's std VGA
cannot announce 16384x16384) that announces a 1 GiB primary surface is not served:
the server's memory stays where it was, clients keep the screen they have with a
message on it and get a NOTIFY, the log says why; the VM's next sane size is served
again. An image over the bound is a usage error at start; a screen resized past it
keeps its size.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from support.hostile import rss_kb
from support.processes import as_rgb, connect_clients, free_port, wait_match, wait_until
from support.rawclient import NotifyReader
from support.spice_peer import SpicePeer
from test_twistd_options import run_twistd

from spice_twisted.render.surface import parse_max_surface
from spice_twisted.sources.vm import WAITING_BG


def black_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black RGB PNG of any size, written a row at a time (tiny on disk and here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + width * 3)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_vm_announcing_a_huge_surface_is_not_served(spawn):
    peer = SpicePeer(16384, 16384)
    try:
        server = spawn.harness("--source", f"spice://127.0.0.1:{peer.port}", "--disable-ticketing")
        (client,) = connect_clients(spawn, server, 1)
        notes = NotifyReader(server.port)
        before = rss_kb(server.proc.pid)
        assert peer.display_linked.wait(30), peer.errors
        wait_until(lambda: any("16384x16384" in t for t in notes.texts), 20, "a NOTIFY naming the VM's size")
        note = next(t for t in notes.texts if "16384x16384" in t)
        assert "over --max-surface 8192x4320" in note, note
        state = server.stats()["source_state"]
        assert state["oversized"] == [16384, 16384] and state["size"] is None and state["state"] == "oversized", state
        assert "over --max-surface 8192x4320" in server.stderr()
        # a client that links while the VM is oversized is told too (the source's standing notice)
        late = NotifyReader(server.port)
        wait_until(lambda: any("16384x16384" in t for t in late.texts), 20, "the NOTIFY to a client linking later")
        late.close()
        # the client keeps its 800x600 screen, now saying why
        wait_until(
            lambda: (fb := as_rgb(client.framebuffer())).shape[:2] == (600, 800) and (fb[3, 3] == WAITING_BG).all(), 15, "the message"
        )
        assert rss_kb(server.proc.pid) - before < 64 * 1024  # a 16384x16384 copy is 1 GiB
        # the VM's next screen fits: served again, to the same client
        peer.resize(1024, 768)
        wait_until(lambda: server.stats()["source_state"]["size"] == [1024, 768], 20, "the sane size served")
        wait_until(lambda: client.shape_now() == (768, 1024), 20, "the client at the new size")
        assert server.stats()["source_state"]["oversized"] is None
        notes.close()
    finally:
        peer.close()


def test_the_bound_is_an_option(spawn):
    """A raised bound lets the same VM through (2048x2048 is over 1024x768, under 4096x4096)."""
    peer = SpicePeer(2048, 2048)
    try:
        low = spawn.harness("--source", f"spice://127.0.0.1:{peer.port}", "--max-surface", "1024x768", "--disable-ticketing")
        wait_until(lambda: low.stats()["source_state"]["oversized"] == [2048, 2048], 30, "refused under 1024x768")
        low.close()
        high = spawn.harness("--source", f"spice://127.0.0.1:{peer.port}", "--max-surface", "4096x4096", "--disable-ticketing")
        wait_until(lambda: high.stats()["source_state"]["size"] == [2048, 2048], 30, "served under 4096x4096")
    finally:
        peer.close()


def test_an_image_over_the_bound_is_refused_at_start(tmp_path):
    big = black_png(tmp_path / "big.png", 9000, 5000)
    r = run_twistd("--source", f"image:{big}", "--port", str(free_port()), "--admin-port", "0", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out, out[-2000:]
    assert "is 9000x5000, over --max-surface 8192x4320" in out, out[-2000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-surface", "1000x700"], "--source demo is 1024x768, over --max-surface 1000x700"),
        (["--max-surface", "640x480"], "smaller than 800x600"),
        (["--max-surface", "big"], "write WxH"),
        (["--max-surface", "20000x100"], "each side 1-16384"),
    ],
)
def test_bad_or_exceeded_bounds_are_usage_errors(tmp_path, args, message):
    r = run_twistd(*args, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and message in out and "Traceback" not in out, out[-2000:]


def test_a_screen_resized_past_the_bound_keeps_its_size(spawn, random_image):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}", "--max-surface", "1024x768")
    (client,) = connect_clients(spawn, server, 1)
    notes = NotifyReader(server.port)
    r = server.command("resize 2000 1000", "resize")
    assert (r["width"], r["height"]) == (333, 217)
    wait_until(lambda: any("2000x1000, over --max-surface 1024x768" in t for t in notes.texts), 15, "the NOTIFY")
    assert "2000x1000, over --max-surface 1024x768" in server.stderr()
    r = server.command("resize 1000 700", "resize")  # within the bound: served
    assert (r["width"], r["height"]) == (1000, 700)
    wait_until(lambda: client.shape_now() == (700, 1000), 20, "the client at the new size")
    notes.close()


def test_pixel_count_and_rotated_screens():
    bound = parse_max_surface("8192x4320")
    assert bound.allows(4320, 8192) and bound.allows(8192, 4320) and not bound.allows(8193, 4320)
    assert not bound.allows(16384, 2160)  # fewer pixels, but a side past 8192
    n = parse_max_surface("2000000")
    assert n.allows(2000, 1000) and not n.allows(2000, 1001) and n.allows(16384, 100)


def test_an_x_display_grown_past_the_bound_is_served_in_part(spawn, xvfb_factory):
    """xrandr grows the X screen past --max-surface: clients keep the size they had and see
    the screen's top-left part (equal to X's own pixels there); a size that fits is served whole."""
    x = xvfb_factory(size=(1024, 768), max_size=(1600, 1200))
    server = spawn.harness("--source", f"x11:{x.display}", "--max-surface", "1024x768", "--disable-ticketing")
    (client,) = connect_clients(spawn, server, 1)
    notes = NotifyReader(server.port)
    x.spawn("xlogo", "-geometry", "300x300+600+400")  # across the served part's edge
    x.set_size(1280, 1024)
    wait_until(lambda: any("1280x1024, over --max-surface 1024x768" in t for t in notes.texts), 15, "the NOTIFY")
    assert server.stats()["source_state"]["oversized"] == [1280, 1024]
    assert "the X display" in server.stderr() and "serving its top-left 1024x768" in server.stderr()

    def top_left():
        return x.root_image()[:768, :1024]

    wait_match(top_left, [client], "X's top-left 1024x768")
    x.set_size(800, 600)
    client.wait_event("primary-create", width=800, height=600)
    wait_match(x.root_image, [client], "X's whole 800x600 screen")
    assert server.stats()["source_state"]["oversized"] is None
    notes.close()
