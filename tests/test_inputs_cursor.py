"""Every client can point and type, view-only clients cannot, and everyone sees the cursor."""

from __future__ import annotations

import time

import numpy as np
from support.processes import as_rgb, wait_until

from spice_twisted.sources.demo import TEXT_BOX, DemoSource

H_KEY, I_KEY, SHIFT = 0x23, 0x17, 0x2A
RIGHT_CTRL = 0x11D  # E0 1D: an extended key


def _rgb(hexcolour: str) -> np.ndarray:
    return np.array([int(hexcolour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def _ready(server, n: int):
    """n clients, connected one after the other so seniority order is known."""
    clients = []
    for _ in range(n):
        c = spawn_client(server)
        c.wait_event("mark")
        c.wait_event("channel", channel="inputs", what="opened")
        clients.append(c)
    return clients


def spawn_client(server):
    return server._spawn.client("--port", str(server.port))


def _settled(server, key="input_events", quiet=0.5, timeout=20.0) -> dict:
    """Wait until the server stops receiving input (the client sent all it had)."""
    deadline = time.monotonic() + timeout
    last = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        s = server.stats()
        now = [c[key] for c in s["clients"]]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return s
        time.sleep(0.1)
    raise AssertionError("input never settled")


def _setup(spawn, n=2):
    server = spawn.harness()
    server._spawn = spawn
    clients = _ready(server, n)
    ids = [c["id"] for c in server.stats()["clients"]]
    return server, clients, ids


def test_drag_paints_in_the_dragging_clients_colour_for_everyone(spawn):
    server, (a, b), ids = _setup(spawn)
    colour_a = _rgb(server.stats()["clients"][0]["colour"])
    a.send("position 700 500 0")
    a.send("press 1 1")
    for x in range(700, 901, 20):
        a.send(f"position {x} 500 1")
    a.send("release 1 0")
    wait_until(lambda: server.stats()["source_state"]["strokes"] >= 1, 20, "a stroke")
    assert _settled(server)["source_state"]["strokes"] >= 1  # spice-gtk merges motions it has not sent yet
    server.pause()
    time.sleep(0.3)
    b.wait_quiet(0.4)
    fb_b = as_rgb(b.framebuffer())
    fb_s = as_rgb(server.framebuffer())
    assert np.array_equal(fb_b, fb_s)
    row = fb_b[500, 700:901]
    assert (np.all(row == colour_a, axis=1)).mean() > 0.9  # the ball may cover a little of it
    assert not np.array_equal(DemoSource().backdrop[500, 700:901, [2, 1, 0]], row)
    assert server.stats()["clients"][0]["input_events"] >= 3  # press, release and a motion at least


def test_keys_typed_by_one_client_show_for_both(spawn):
    server, (a, b), ids = _setup(spawn)
    a.send(f"key {H_KEY}")  # KEY_SCANCODE message (press and release in one)
    a.send(f"keydown {SHIFT}")  # KEY_DOWN / KEY_UP messages
    a.send(f"keydown {I_KEY}")
    a.send(f"keyup {I_KEY}")
    a.send(f"keyup {SHIFT}")
    a.send(f"keydown {RIGHT_CTRL}")  # an E0 key goes through without typing anything
    a.send(f"keyup {RIGHT_CTRL}")
    wait_until(lambda: server.stats()["source_state"]["typed"] == "hI")
    b.wait_event("cursor-hide")  # typing hides the shared pointer for everyone
    server.pause()
    b.wait_quiet(0.4)
    t = TEXT_BOX
    box_b = as_rgb(b.framebuffer())[t.top : t.bottom, t.left : t.right]
    box_s = as_rgb(server.framebuffer())[t.top : t.bottom, t.left : t.right]
    assert np.array_equal(box_b, box_s)
    empty = DemoSource()._text_pixels()[..., [2, 1, 0]]
    assert not np.array_equal(box_b, empty)


def test_view_only_client_changes_nothing_and_is_counted(spawn):
    server, (a, b), ids = _setup(spawn)
    server.view_only(ids[1], True)
    server.pause()
    time.sleep(0.3)
    before = as_rgb(server.framebuffer())

    def mine(s: dict) -> dict:
        return [c for c in s["clients"] if c["id"] == ids[1]][0]

    start = mine(server.stats())
    b.send("position 300 600 0")
    b.send("press 1 1")
    for x in range(300, 500, 10):
        b.send(f"position {x} 600 1")
    b.send("release 1 0")
    b.send(f"key {H_KEY}")
    # Press, release, the key's down and up, and motions (spice-gtk merges those it has not
    # sent yet, so a loaded machine sees fewer): at least five dropped, none taken.
    wait_until(lambda: mine(server.stats())["input_dropped"] - start["input_dropped"] >= 5, 20, "the view-only input dropped")
    s = _settled(server, "input_dropped")
    cl = mine(s)
    assert cl["input_dropped"] - start["input_dropped"] >= 5 and cl["input_events"] == start["input_events"]
    assert s["source_state"]["strokes"] == 0 and s["source_state"]["typed"] == ""
    assert np.array_equal(as_rgb(server.framebuffer()), before)
    # Back to normal: now it draws.
    server.view_only(ids[1], False)
    b.send("press 1 1")
    b.send("position 320 600 1")
    b.send("release 1 0")
    wait_until(lambda: server.stats()["source_state"]["strokes"] > 0)


def test_mouse_mode_switch_reaches_every_client(spawn):
    server, (a, b), ids = _setup(spawn)
    assert server.stats()["mouse_mode"] == "client"
    start_b = len(b.events)
    a.command("mouse_mode 1", "mouse_mode")
    # Every client hears the switch to server mode; spice-gtk then asks for client mode
    # again whenever the server supports it (as with upstream), and everyone hears that too.
    b.wait_for(lambda e: e.get("event") == "mouse-mode" and e.get("mode") == 1, start=start_b)
    a.wait_for(lambda e: e.get("event") == "mouse-mode" and e.get("mode") == 1)
    b.wait_for(lambda e: e.get("event") == "mouse-mode" and e.get("mode") == 2, start=start_b)
    wait_until(lambda: server.stats()["mouse_mode"] == "client")


def test_server_mouse_mode_moves_the_shared_cursor_for_everyone(spawn, random_image):
    """A source without absolute input offers server mode only: relative motion moves one
    pointer, and every client's cursor follows it."""
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")
    server._spawn = spawn
    a, b = _ready(server, 2)
    assert server.stats()["mouse_mode"] == "server"
    assert a.stats()["mouse_mode"] == 1 and b.stats()["mouse_mode"] == 1
    a.send("motion 40 30 0")
    wait_until(lambda: b.stats()["cursor_pos"] == [40, 30])
    a.send("motion 500 500 0")  # clamped to the 333x217 surface
    wait_until(lambda: b.stats()["cursor_pos"] == [332, 216])


def test_long_drag_keeps_flowing_with_motion_acks(spawn):
    server, (a, b), ids = _setup(spawn)
    r = a.command("drag 100 450 900 650 3000", "drag", timeout=60)
    assert r["ok"]
    _settled(server)
    server.pause()
    time.sleep(0.3)
    a.wait_quiet(0.4)
    fb = as_rgb(b.framebuffer())
    colour_a = _rgb(server.stats()["clients"][0]["colour"])
    # The stroke reaches the end of the drag: the motion ACKs kept spice-gtk sending.
    assert np.all(fb[650, 897:900] == colour_a) or np.all(fb[649, 897:900] == colour_a)
    events = server.stats()["clients"][0]["input_events"]
    assert events > 1000, events  # without ACKs spice-gtk stops after 8 and keeps only the last
    assert np.array_equal(fb, as_rgb(server.framebuffer()))


def test_lock_leds_reach_the_other_clients(spawn):
    server, (a, b), ids = _setup(spawn)
    a.send("locks 4")  # caps lock on at A
    b.wait_for(lambda e: e.get("event") == "modifiers" and e.get("value") & 4 == 4)
    a.send(f"key {H_KEY}")
    wait_until(lambda: server.stats()["source_state"]["typed"] == "H")  # caps lock makes it upper case


def test_every_client_gets_the_cursor_and_a_late_joiner_too(spawn):
    server, (a, b), ids = _setup(spawn)
    demo = DemoSource()
    for c in (a, b):
        ev = c.wait_event("cursor-set")
        assert (ev["width"], ev["height"], ev["hot_x"], ev["hot_y"]) == (demo.arrow.width, demo.arrow.height, 0, 0)
        assert ev["has_data"]
    # Over the text line the demo shows an I-beam: a SET to every client.
    a.send(f"position {TEXT_BOX.left + 50} {TEXT_BOX.top + 10} 0")
    for c in (a, b):
        c.wait_for(
            lambda e: (
                e.get("event") == "cursor-set"
                and (e["width"], e["height"], e["hot_x"], e["hot_y"]) == (demo.ibeam.width, demo.ibeam.height, 4, 10)
            )
        )
    late = spawn_client(server)
    ev = late.wait_event("cursor-set")
    assert (ev["width"], ev["height"], ev["hot_x"], ev["hot_y"]) == (demo.ibeam.width, demo.ibeam.height, 4, 10)
    # Back to the arrow: already in each client's cache, sent from the cache.
    a.send("position 500 500 0")
    for c in (a, b, late):
        c.wait_for(lambda e: e.get("event") == "cursor-set" and e["width"] == demo.arrow.width and e["height"] == demo.arrow.height)
