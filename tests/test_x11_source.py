"""`--source x11`: a real Xvfb with real X programs, served to real spice-gtk clients.

What the clients decode is compared with the root window read back by xwd (not
through the server under test); input typed into a client is checked in xev's
output; the pointer and its shape against what X itself reports.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from support import processes
from support.processes import as_rgb, connect_clients, wait_until
from support.rawclient import NotifyReader
from support.xvfb import Xvfb


@pytest.fixture
def xvfb(xvfb_factory) -> Xvfb:
    return xvfb_factory(size=(1024, 768), solid="#336699")


def wait_match(x: Xvfb, clients, timeout: float = 25.0) -> np.ndarray:
    """Until every client shows exactly the X root window at once; returns it."""
    return processes.wait_match(x.root_image, clients, "the X root window", timeout, 0.3)


def window_id(x: Xvfb, name: str) -> str:
    return x.run("xdotool", "search", "--sync", "--name", name).stdout.split()[0]


def test_two_clients_see_the_root_window_as_programs_draw_move_and_close(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    clients = connect_clients(spawn, server)
    wait_match(xvfb, clients)
    term = xvfb.spawn("xterm", "-geometry", "70x20+30+40", "-T", "scroller", "-e", "sh", "-c", "seq 1 400; sleep 60")
    logo = xvfb.spawn("xlogo", "-geometry", "220x180+600+300", "-name", "thelogo")
    window_id(xvfb, "scroller")
    window_id(xvfb, "thelogo")
    wait_match(xvfb, clients)
    xvfb.run("xdotool", "windowmove", window_id(xvfb, "thelogo"), "150", "420")
    wait_match(xvfb, clients)
    for p in (logo, term):
        p.terminate()
        p.wait(5)
    root = wait_match(xvfb, clients)
    assert np.all(root == (0x33, 0x66, 0x99))  # the windows really went
    state = server.stats()["source_state"]
    assert state["capture"]["shm"] is True
    # damage-driven: most reads were partial, not whole screens
    assert state["capture"]["frames"] > state["capture"]["full_reads"]


def test_nothing_is_read_while_no_client_is_connected(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    # one full read at connect (a late joiner starts from it), then nothing while X draws
    wait_until(lambda: server.stats()["source_state"]["capture"]["full_reads"] == 1, 15, "the read at connect")
    xvfb.spawn("xterm", "-geometry", "60x10+0+0", "-e", "sh", "-c", "while :; do date +%N; sleep 0.02; done")
    time.sleep(2.0)
    cap = server.stats()["source_state"]["capture"]
    assert cap["frames"] == 1 and cap["pixels"] == 1024 * 768, cap
    (client,) = connect_clients(spawn, server, 1)
    wait_until(lambda: server.stats()["source_state"]["capture"]["frames"] > 3, 15, "reading once a client is there")
    client.close()
    time.sleep(1.5)  # the watch notices within half a second
    before = server.stats()["source_state"]["capture"]["frames"]
    time.sleep(1.0)
    assert server.stats()["source_state"]["capture"]["frames"] == before


XEV_EVENT = re.compile(r"(KeyPress|KeyRelease|ButtonPress) event.*?\n.*?\n.*?(?:keycode \d+ \(keysym 0x[0-9a-f]+, (\w+)\)|button (\d+))")


def xev_events(path: Path) -> list[tuple[str, str]]:
    return [(kind, keysym or button) for kind, keysym, button in XEV_EVENT.findall(path.read_text())]


def test_click_and_keys_reach_an_x_program_and_view_only_keys_do_not(spawn, xvfb, tmp_path):
    from support.rawclient import RawInputs

    from spice_twisted.wire.enums import MsgcInputs

    log = tmp_path / "xev.txt"
    with open(log, "w") as out:
        xvfb.spawn(
            "stdbuf", "-oL", "xev", "-geometry", "500x400+0+0", "-name", "keys", "-event", "keyboard", "-event", "button", stdout=out
        )
    window_id(xvfb, "keys")
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    (a,) = connect_clients(spawn, server, 1)
    a.send("position 200 150 0")
    wait_until(lambda: "200" in xvfb.run("xdotool", "getmouselocation").stdout, 10, "the X pointer at the client's position")
    assert "x:200 y:150" in xvfb.run("xdotool", "getmouselocation").stdout
    a.send("press 1 1")
    a.send("release 1 0")
    a.send("press 3 4")
    a.send("release 3 0")
    # a, F5, Up, Left, keypad / and Enter, keypad 1 (Num Lock off: End), Right Ctrl, Home,
    # Delete, Super, Pause
    keys = [0x1E, 0x3F, 0x148, 0x14B, 0x135, 0x11C, 0x4F, 0x11D, 0x147, 0x153, 0x15B, 0x145]
    want = ["a", "F5", "Up", "Left", "KP_Divide", "KP_Enter", "KP_End", "Control_R", "Home", "Delete", "Super_L", "Pause"]
    for k in keys:
        a.send(f"key {k:#x}")
    expected = [("ButtonPress", "1"), ("ButtonPress", "3")] + [(kind, k) for k in want for kind in ("KeyPress", "KeyRelease")]
    wait_until(lambda: len(xev_events(log)) >= len(expected), 15, "xev got every event")
    assert xev_events(log) == expected

    # b becomes view-only: its keys and clicks go nowhere; a's still arrive. b's input is
    # known to be handled (dropped, or sent to X) before a types: had it reached X, it
    # would be in xev's output ahead of a's key, which goes to X on the same connection.
    b = RawInputs(server.port)
    try:
        wait_until(lambda: len(server.stats()["clients"]) == 2, 15, "the second client")
        server.view_only(b.session_id, True)
        b.send(MsgcInputs.KEY_SCANCODE, code=bytes([0x3B, 0xBB]))  # F1 down, up
        b.send(MsgcInputs.MOUSE_PRESS, button=1, buttons_state=1)
        b.send(MsgcInputs.MOUSE_RELEASE, button=1, buttons_state=0)
        b.handled()
        a.send("key 0x3C")  # F2
        wait_until(lambda: ("KeyRelease", "F2") in xev_events(log), 15, "the driving client's key")
        got = xev_events(log)[len(expected) :]
        assert got == [("KeyPress", "F2"), ("KeyRelease", "F2")], got
        # The same input from b once it may drive does reach X: what was dropped was b's.
        server.view_only(b.session_id, False)
        b.send(MsgcInputs.KEY_SCANCODE, code=bytes([0x3B, 0xBB]))
        b.handled()
        wait_until(lambda: ("KeyRelease", "F1") in xev_events(log), 15, "b's key once it drives")
    finally:
        b.close()


def pressed_keycodes(x: Xvfb) -> list[int]:
    import xcffib
    import xcffib.xproto

    conn = xcffib.connect(display=x.display)
    try:
        keys = conn.core.QueryKeymap().reply().keys
        return [8 * i + b for i, byte in enumerate(keys) for b in range(8) if byte >> b & 1]
    finally:
        conn.disconnect()


def test_keys_held_by_a_client_that_leaves_are_released(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    a, b = connect_clients(spawn, server)
    a.send("keydown 0x2A")  # Left Shift
    a.send("keydown 0x1D")  # Left Ctrl
    b.send("keydown 0x1D")  # b holds Left Ctrl too
    wait_until(lambda: set(pressed_keycodes(xvfb)) >= {50, 37}, 10, "Shift and Ctrl held in X")
    a.close()
    # a's Shift goes; Ctrl stays down while b holds it
    wait_until(lambda: 50 not in pressed_keycodes(xvfb), 10, "Shift released for the departed client")
    assert 37 in pressed_keycodes(xvfb)
    b.send("keyup 0x1D")
    wait_until(lambda: not pressed_keycodes(xvfb), 10, "nothing held")
    assert server.stats()["source_state"]["released_for_departed"] == 1


def xset_locks(x: Xvfb) -> dict[str, bool]:
    out = x.run("xset", "q").stdout
    return {name: re.search(rf"{name}:\s+(on|off)", out).group(1) == "on" for name in ("Caps Lock", "Num Lock")}


def test_client_lock_leds_reach_x(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    (a,) = connect_clients(spawn, server, 1)
    a.send("locks 6")  # Num and Caps on
    wait_until(lambda: xset_locks(xvfb) == {"Caps Lock": True, "Num Lock": True}, 30, "X's Caps and Num Lock on")
    a.send("locks 2")  # Caps off
    wait_until(lambda: xset_locks(xvfb) == {"Caps Lock": False, "Num Lock": True}, 30, "X's Caps Lock off")
    wait_until(lambda: server.stats()["source_state"]["x_locks"] == 2, 30, "the source saw X's LEDs change")


def test_x_lock_leds_reach_every_client(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    clients = connect_clients(spawn, server, 2)
    xvfb.run("xdotool", "key", "Caps_Lock")  # a keyboard on the X side
    for c in clients:
        wait_until(lambda c=c: c.stats()["modifiers"] & 4, 30, "Caps Lock on in the client")
    xvfb.run("xdotool", "key", "Caps_Lock")
    for c in clients:
        wait_until(lambda c=c: not c.stats()["modifiers"] & 4, 30, "Caps Lock off in the client")


def x_cursor(x: Xvfb) -> tuple[int, int, int, int]:
    import xcffib
    import xcffib.xfixes

    conn = xcffib.connect(display=x.display)
    try:
        xf = conn(xcffib.xfixes.key)
        xf.QueryVersion(5, 0).reply()
        r = xf.GetCursorImage().reply()
        return r.width, r.height, r.xhot, r.yhot
    finally:
        conn.disconnect()


def cursor_sets(client) -> list[tuple[int, int, int, int]]:
    return [
        (e["width"], e["height"], e["hot_x"], e["hot_y"]) for e in client.events if e.get("event") == "cursor-set" and e.get("has_data")
    ]


def test_the_x_pointer_and_its_shape_reach_both_clients(spawn, xvfb):
    xvfb.spawn("xterm", "-geometry", "40x10+400+300", "-T", "ibeam")
    window_id(xvfb, "ibeam")
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    clients = connect_clients(spawn, server)
    for x, y in ((300, 200), (17, 611)):
        xvfb.run("xdotool", "mousemove", str(x), str(y))
        for c in clients:
            wait_until(lambda c=c, x=x, y=y: c.stats()["cursor_pos"] == [x, y], 10, f"cursor at {x},{y}")
    root_cursor = x_cursor(xvfb)  # the server's own X cursor over the root window
    # into the xterm: its I-beam, whose image X hands out (xterm, its maker, is running)
    xvfb.run("xdotool", "mousemove", "500", "350")
    ibeam = x_cursor(xvfb)
    assert ibeam != root_cursor
    for c in clients:
        wait_until(lambda c=c: cursor_sets(c)[-1:] == [ibeam], 10, "the I-beam")
        wait_until(lambda c=c: c.stats()["cursor_pos"] == [500, 350], 10, "cursor in the xterm")
    xvfb.run("xdotool", "mousemove", "100", "100")
    for c in clients:
        wait_until(lambda c=c: cursor_sets(c)[-1:] == [root_cursor], 10, "the root cursor again")
    # A root cursor set by a client that left (xsetroot) cannot be read with SECURITY on:
    # a plain arrow stands in, the pointer still moves.
    xvfb.run("xsetroot", "-cursor_name", "left_ptr")
    for c in clients:
        wait_until(lambda c=c: cursor_sets(c)[-1:] != [root_cursor], 10, "a new shape")
    xvfb.run("xdotool", "mousemove", "222", "111")
    for c in clients:
        wait_until(lambda c=c: c.stats()["cursor_pos"] == [222, 111], 10, "cursor at 222,111")
    assert server.stats()["source_state"]["available"] is True


def test_a_screen_size_change_reaches_both_clients(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    clients = connect_clients(spawn, server)
    xvfb.spawn("xlogo", "-geometry", "300x300+500+300")
    wait_match(xvfb, clients)
    for w, h in ((800, 600), (1280, 1024)):
        xvfb.set_size(w, h)
        for c in clients:
            c.wait_event("primary-create", width=w, height=h)
        root = wait_match(xvfb, clients)
        assert root.shape == (h, w, 3)
    assert server.stats()["render"]["resizes"] == 2


def test_x_server_killed_then_back(spawn, xvfb):
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    clients = connect_clients(spawn, server)
    wait_match(xvfb, clients)
    notes = NotifyReader(server.port)  # a main channel that reads what clients are told
    xvfb.kill()
    wait_until(lambda: any("unavailable" in t for t in notes.texts), 15, "a NOTIFY that the display is unavailable")
    # every client keeps its connection and shows the "display unavailable" frame
    for c in clients:
        wait_until(lambda c=c: (as_rgb(c.framebuffer())[5, 5] == (40, 44, 52)).all(), 15, "the unavailable frame")
    frame = server.framebuffer()
    for c in clients:
        assert np.array_equal(as_rgb(c.framebuffer()), as_rgb(frame))
    assert len(server.stats()["clients"]) == 3  # the two viewers and the NOTIFY reader
    assert server.stats()["source_state"]["available"] is False
    time.sleep(4)  # a retry or two fails
    xvfb.restart()
    xvfb.run("xsetroot", "-solid", "#884400")
    root = wait_match(xvfb, clients, timeout=30)
    assert np.all(root == (0x88, 0x44, 0x00))
    log = server.stderr()
    assert log.count("was lost") == 1, log
    assert "is back" in log
    wait_until(lambda: any("is back" in t for t in notes.texts), 15, "a NOTIFY that the display is back")
    notes.close()
    # input works on the new X server
    clients[0].send("position 321 123 0")
    wait_until(lambda: "x:321 y:123" in xvfb.run("xdotool", "getmouselocation").stdout, 10, "pointer on the new X server")


def test_exit_on_x_loss(spawn, xvfb):
    server = spawn.server("--source", f"x11:{xvfb.display}", "--exit-on-x-loss", "--disable-ticketing")
    xvfb.kill()
    server.proc.wait(20)
    assert "exiting (--exit-on-x-loss)" in server.log()


def test_without_mit_shm_plain_getimage_serves_the_same_pixels(spawn, xvfb_factory):
    x = xvfb_factory(size=(800, 600), max_size=(800, 600), args=("-extension", "MIT-SHM"), solid="#225511")
    server = spawn.harness("--source", f"x11:{x.display}", "--disable-ticketing")
    clients = connect_clients(spawn, server)
    x.spawn("xterm", "-geometry", "50x15+20+20", "-T", "plain", "-e", "sh", "-c", "seq 1 300; sleep 60")
    window_id(x, "plain")
    wait_match(x, clients)
    assert server.stats()["source_state"]["capture"]["shm"] is False
