"""The built-in agent on the X11 source, end to end: real spice-gtk clients, the real server,
a real X server that RandR can resize (TigerVNC's Xvnc), and real X clients (xclip,
xdpyinfo via Xvnc.size, xwd via Xvnc.root_image) reading and writing what X holds.

Nothing here is read from the server's own counters except to wait for a refusal that
must leave X and the clients unchanged (which is then checked at X and at the clients).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image
from support import processes
from support.processes import connect_clients, wait_until
from support.xvnc import Xvnc

from spice_twisted.wire.enums import AgentCap

UTF8_TEXT, IMAGE_PNG = 1, 2  # VD_AGENT_CLIPBOARD_* type numbers as spice-gtk gives them


def sids(server) -> list[int]:
    return [c["id"] for c in server.stats()["clients"]]


def paste(receiver, start: int, sel: int = 0, kind: int = UTF8_TEXT) -> dict:
    """Paste like a viewer: wait for a grab (after event `start`) offering `kind`, request
    it, return the main-clipboard-selection event (its text, size and sha256)."""
    receiver.wait_for(lambda e: e.get("event") == "clip-grab" and e["sel"] == sel and kind in e["types"], timeout=30, start=start)
    mark = len(receiver.events)
    receiver.command(f"clip_request {sel} {kind}", "clip_request")
    got = receiver.wait_for(lambda e: e.get("event") == "clip-data" and e["sel"] == sel, timeout=30, start=mark)
    assert got["type"] == kind, got
    return got


def x_clipboard(x: Xvnc, selection: str = "clipboard") -> str | None:
    r = x.run("xclip", "-o", "-selection", selection, check=False)
    return r.stdout if r.returncode == 0 else None


def xclip_owner(x: Xvnc, tmp: Path, data: bytes, target: str | None = None):
    """xclip holding CLIPBOARD with `data` until another client takes it (or the test ends)."""
    path = tmp / f"xclip-{hashlib.sha1(data).hexdigest()[:8]}"
    path.write_bytes(data)
    argv = ["xclip", "-quiet", "-selection", "clipboard", "-i", str(path)]
    if target:
        argv += ["-t", target]
    return x.spawn(*argv)


def png_bytes(w: int, h: int) -> bytes:
    px = np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def x11_server(spawn, xvnc: Xvnc):
    server = spawn.harness("--source", f"x11:{xvnc.display}", "--disable-ticketing")
    return server


def test_clipboard_between_spice_gtk_clients_and_the_x_display(spawn, xvnc, tmp_path):
    server = x11_server(spawn, xvnc)
    a, b = connect_clients(spawn, server, 2)
    for c in (a, b):
        c.wait_event("agent", connected=True, timeout=30)
        caps = wait_until(lambda c=c: c.command("agent", "agent")["caps0"], 20, "the agent's caps")
        assert caps >> AgentCap.CLIPBOARD_BY_DEMAND & 1 and caps >> AgentCap.MONITORS_CONFIG & 1

    # A copies: X's CLIPBOARD holds it (xclip reads it back) and B pastes it.
    secret = "from client A: Grüße ✓ 42"
    mark_b = len(b.events)
    a.command(f"clip_copy 0 {secret}", "clip_copy")
    a.wait_event("clip-request", sel=0, type=UTF8_TEXT, answered=True, timeout=30)
    wait_until(lambda: x_clipboard(xvnc) == secret, 30, "A's text in X's CLIPBOARD")
    assert paste(b, mark_b)["text"] == secret

    # Text set in X reaches both clients.
    marks = [len(a.events), len(b.events)]
    xclip_owner(xvnc, tmp_path, "copied in X ✓".encode())
    for c, mark in zip((a, b), marks, strict=True):
        assert paste(c, mark)["text"] == "copied in X ✓"

    # A PNG set in X reaches a client as IMAGE_PNG, byte for byte (~90 kB: many chunks).
    png = png_bytes(200, 150)
    mark = len(a.events)
    xclip_owner(xvnc, tmp_path, png, "image/png")
    got = paste(a, mark, kind=IMAGE_PNG)
    assert (got["size"], got["sha256"]) == (len(png), hashlib.sha256(png).hexdigest())


def test_a_resize_from_the_primary_changes_the_x_screen_and_both_clients_follow(spawn, xvnc):
    xvnc.run("xsetroot", "-solid", "#336699")
    server = x11_server(spawn, xvnc)
    a, b = connect_clients(spawn, server, 2)
    xvnc.spawn("xlogo", "-geometry", "300x250+400+200")
    a.wait_event("agent", connected=True, timeout=30)
    processes.wait_match(xvnc.root_image, [a, b], "the X root window", 30, 0.3)
    for w, h in ((1024, 768), (1001, 667)):
        r = a.command(f"monitor {w} {h}", "monitor")
        assert r["ok"], r
        wait_until(lambda w=w, h=h: xvnc.size() == (w, h), 30, f"the X screen at {w}x{h}")
        for c in (a, b):
            c.wait_for(lambda e, w=w, h=h: e.get("event") == "primary-create" and (e["width"], e["height"]) == (w, h), timeout=30)
        root = processes.wait_match(xvnc.root_image, [a, b], "the X root window", 30, 0.3)
        assert root.shape == (h, w, 3)


def test_a_view_only_clients_paste_and_resize_do_nothing(spawn, xvnc, tmp_path):
    server = x11_server(spawn, xvnc)
    a, b = connect_clients(spawn, server, 2)
    for c in (a, b):
        c.wait_event("agent", connected=True, timeout=30)
    xclip_owner(xvnc, tmp_path, b"held in X")
    wait_until(lambda: x_clipboard(xvnc) == "held in X", 20, "X's own CLIPBOARD")
    _sa, sb = sids(server)
    server.view_only(sb, True)
    b.command("clip_copy 0 from the watcher", "clip_copy")
    b.command("monitor 1024 768", "monitor")
    wait_until(lambda: server.stats()["agent"]["refused"] == {"paste": 1, "resize": 1}, 30, "both refused")
    assert not [e for e in b.events if e.get("event") == "clip-request"], "never asked a view-only client for its copy"
    assert x_clipboard(xvnc) == "held in X"
    assert xvnc.size() == (800, 600)
    assert b.framebuffer().shape[:2] == (600, 800) and a.framebuffer().shape[:2] == (600, 800)
    # ... and it may still copy out what X holds.
    mark = len(b.events)
    xclip_owner(xvnc, tmp_path, b"for the watcher too")
    assert paste(b, mark)["text"] == "for the watcher too"


def test_primary_and_a_large_text_reach_x_and_a_release_keeps_them(spawn, xvnc):
    server = x11_server(spawn, xvnc)
    a, b = connect_clients(spawn, server, 2)
    a.wait_event("agent", connected=True, timeout=30)
    wait_until(lambda: a.command("agent", "agent")["caps0"] >> AgentCap.CLIPBOARD_SELECTION & 1, 20, "selection caps")
    # PRIMARY (a middle-click paste in X) travels apart from CLIPBOARD.
    mark_b = len(b.events)
    a.command("clip_copy 1 selected words", "clip_copy")
    wait_until(lambda: x_clipboard(xvnc, "primary") == "selected words", 30, "A's PRIMARY in X")
    assert paste(b, mark_b, sel=1)["text"] == "selected words"
    # ~200 kB of text: many AGENT_DATA chunks from spice-gtk, INCR to xclip.
    big = "0123456789abcdef" * 12_500
    a.command(f"clip_copy 0 {big}", "clip_copy")
    wait_until(lambda: x_clipboard(xvnc) == big, 40, "the large text in X's CLIPBOARD")
    # A releases its copy: what it copied was taken at once (eager) and is the desktop's
    # now (agent_policy.client_release), so X keeps it, and B still pastes it.
    mark_b = len(b.events)
    a.command("clip_release 0", "clip_release")
    a.command("clip_copy 1 a later selection", "clip_copy")  # a later message from A: the release is handled
    wait_until(lambda: x_clipboard(xvnc, "primary") == "a later selection", 30, "A's later PRIMARY in X")
    assert x_clipboard(xvnc) == big
    assert paste(b, mark_b, sel=1)["text"] == "a later selection"
    mark = len(b.events)
    b.command("clip_request 0 1", "clip_request")
    got = b.wait_for(lambda e: e.get("event") == "clip-data" and e["sel"] == 0, timeout=30, start=mark)
    assert (got["size"], got["sha256"]) == (len(big), hashlib.sha256(big.encode()).hexdigest())


def test_what_x_held_before_the_server_started_is_offered(spawn, xvnc, tmp_path):
    xclip_owner(xvnc, tmp_path, b"copied before the server")
    wait_until(lambda: x_clipboard(xvnc) == "copied before the server", 20, "X's own CLIPBOARD")
    server = x11_server(spawn, xvnc)
    (a,) = connect_clients(spawn, server, 1)
    assert paste(a, 0)["text"] == "copied before the server"
