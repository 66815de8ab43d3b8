"""The X11 source's parts on their own: keymaps from real X servers, start-up checks as
usage errors, cursor images, per-client key bookkeeping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.processes import _env, free_port, wait_match
from support.xvfb import parse_xwd

xcffib = pytest.importorskip("xcffib")

from spice_twisted.sources.x11_cursor import shape_from_argb  # noqa: E402
from spice_twisted.sources.x11_input import E0, SCANCODE_NAMES, XInjector, build_keymap, evdev_keymap, server_keymap  # noqa: E402


def run_twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "twisted", "spice", "--port", str(free_port()), "--admin-port", "0", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=str(cwd), timeout=60)


# --- keymaps ---------------------------------------------------------------------------------
def test_keymap_from_xkb_names_on_evdev_and_xfree86_keycodes(xvfb_factory):
    x = xvfb_factory(size=(640, 480), max_size=(640, 480))
    conn = xcffib.connect(display=x.display)
    try:
        keymap, how = server_keymap(conn)
        assert how == "xkb names"
        evdev = evdev_keymap()
        # Xvfb uses evdev keycodes: the names give what the evdev rule gives, key for key
        assert {sc: kc for sc, kc in keymap.items() if sc in evdev} == {sc: evdev[sc] for sc in keymap if sc in evdev}
        assert keymap[0x1E] == 38 and keymap[E0 | 0x48] == 111 and keymap[E0 | 0x1D] == 105
        assert len(keymap) >= 100
    finally:
        conn.disconnect()
    # the older xfree86 keycode set: the same names sit at other keycodes
    x.run("setxkbmap", "-keycodes", "xfree86", "-layout", "us")
    conn = xcffib.connect(display=x.display)
    try:
        keymap, how = server_keymap(conn)
        assert how == "xkb names"
        assert keymap[0x1E] == 38  # the basic range is scancode + 8 in both sets
        assert keymap[E0 | 0x48] == 98 and keymap[E0 | 0x1D] == 109 and keymap[E0 | 0x35] == 112  # Up, RCtrl, KP /
    finally:
        conn.disconnect()


def test_keymap_uses_aliases_and_falls_back_to_evdev():
    names = {f"AE{i:02d}": 100 + i for i in range(1, 13)} | {"AC12": 51, "MENU": 135}
    km = build_keymap(names)
    assert km[0x02] == 101 and km[0x2B] == 51 and km[E0 | 0x5D] == 135
    assert 0x1E not in km  # no name, no guess
    every = set(SCANCODE_NAMES)
    assert {0x3F, E0 | 0x48, E0 | 0x1C, E0 | 0x35, E0 | 0x1D, 0x145} <= every


class FakeXTest:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []

    def FakeInput(self, kind, detail, time, root, x, y, device):  # noqa: N802 (xcffib's name)
        self.sent.append((kind, detail))


class FakeConn:
    def __init__(self) -> None:
        self.xtest = FakeXTest()

    def __call__(self, key):
        return self.xtest

    def flush(self) -> None:
        pass

    def poll_for_event(self):
        return None


def test_injector_releases_in_x_only_when_no_client_holds_the_key():
    conn = FakeConn()
    inj = XInjector(conn, 1, {0x2A: 50, 0x1E: 38}, {}, on_error=lambda exc: None)
    inj.key(1, 0x2A, True)
    inj.key(2, 0x2A, True)
    inj.key(1, 0x2A, False)  # 2 still holds Shift: X keeps it down
    inj.key(1, 0x1E, True)
    inj.key(1, 0x7F, True)  # no keycode for it: counted, not sent
    assert conn.xtest.sent == [(2, 50), (2, 50), (2, 38)]
    assert inj.unmapped == 1
    assert inj.sessions() == {1, 2}
    assert inj.release_all(1) == 1  # 'a'
    assert inj.release_all(2) == 1  # Shift, now nobody holds it
    assert conn.xtest.sent[-2:] == [(3, 38), (3, 50)]
    inj.button(3, 6, True, 10, 10)  # SPICE side button -> X button 8
    assert conn.xtest.sent[-2:] == [(6, 0), (4, 8)]
    assert inj.release_all(3) == 1 and conn.xtest.sent[-1] == (5, 8)


# --- cursor images ---------------------------------------------------------------------------
def test_cursor_image_premultiplied_to_straight_alpha():
    # ARGB words: opaque red, half-transparent white (premultiplied 0x80), transparent
    words = np.array([[0xFFFF0000, 0x80808080, 0x00000000]], dtype=np.uint32)
    shape = shape_from_argb(words, 3, 1, 1, 5)
    px = np.frombuffer(shape.argb, dtype=np.uint8).reshape(1, 3, 4)  # B G R A
    assert px[0, 0].tolist() == [0, 0, 255, 255]
    assert px[0, 1].tolist() == [255, 255, 255, 128]
    assert px[0, 2].tolist() == [0, 0, 0, 0]
    assert (shape.hot_x, shape.hot_y) == (1, 0)  # clamped into the image


# --- start-up checks -------------------------------------------------------------------------
def test_missing_extensions_are_named(xvfb_factory, tmp_path):
    x = xvfb_factory(size=(640, 480), max_size=(640, 480), args=("-extension", "DAMAGE", "-extension", "XTEST"))
    r = run_twistd("--source", f"x11:{x.display}", "--disable-ticketing", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out
    assert "lacks the extensions DAMAGE, XTEST" in out


def test_a_16_bit_display_is_refused_with_a_reason(xvfb_factory, tmp_path):
    x = xvfb_factory(size=(640, 480), max_size=(640, 480), depth=16)
    r = run_twistd("--source", f"x11:{x.display}", "--disable-ticketing", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out
    assert "16 bits deep (24 or 32-bit TrueColor is needed)" in out


@pytest.mark.parametrize(
    "args,env,message",
    [
        (["--source", "x11::79", "--disable-ticketing"], {}, "cannot connect to X display ':79'"),
        (["--source", "x11", "--disable-ticketing"], {"DISPLAY": ""}, "$DISPLAY is not set"),
        (["--exit-on-x-loss"], {}, "--exit-on-x-loss needs --source x11"),
    ],
)
def test_bad_x11_options_give_clear_errors(tmp_path, args, env, message):
    argv = [sys.executable, "-m", "twisted", "spice", "--port", str(free_port()), "--admin-port", "0", *args]
    r = subprocess.run(argv, capture_output=True, text=True, env={**_env(), **env}, cwd=str(tmp_path), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out
    assert message in out


def test_display_given_as_x_spells_it_or_as_a_bare_number(xvfb_factory, tmp_path, spawn):
    """x11:N (a bare number, which X's own parser refuses) is display N, as x11::N is; X's
    HOST:N forms pass through; a wrong name says what was tried. Through real twistd."""
    from support.startup import TwistdRun

    x = xvfb_factory(size=(640, 480), max_size=(640, 480))
    x.run("xsetroot", "-solid", "#204060")
    pw = tmp_path / "pw"
    pw.write_text("x11-pw\n")
    pw.chmod(0o600)
    for spec, name in ((f"x11:{x.number}", f":{x.number}"), (f"x11:unix:{x.number}.0", f"unix:{x.number}.0")):
        run = TwistdRun("--source", spec, "--password-file", str(pw), tmp=tmp_path)
        try:
            assert f"serving x11:{name} (640x480)" in run.wait_ready()
            client = spawn.client("--port", str(run.port), "--password", "x11-pw")
            client.wait_event("mark", timeout=30)
            wait_match(x.root_image, [client], "the X root window")
            client.close()
        finally:
            run.stop()
    free = next(n for n in range(x.number + 1, x.number + 100) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    r = run_twistd("--source", f"x11:{free}", "--password-file", str(pw), cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out and "parsing display string" not in out, out
    assert f"--source x11:{free}: cannot connect to X display ':{free}': tried display {free} on this machine" in out, out
    assert f"/tmp/.X11-unix/X{free}" in out, out
    r = run_twistd("--source", "x11:nohost", "--password-file", str(pw), cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "'nohost' is not an X display name; write x11:N or x11::N" in out, out


def test_xwd_reader_matches_a_known_picture(xvfb_factory):
    x = xvfb_factory(size=(320, 200), max_size=(320, 200))
    x.run("xsetroot", "-solid", "#102030")
    img = x.root_image()
    assert img.shape == (200, 320, 3) and np.all(img == (0x10, 0x20, 0x30))
    raw = subprocess.run(["xwd", "-root", "-silent"], env=x.env(), capture_output=True, check=True).stdout
    assert np.array_equal(parse_xwd(raw), img)


def test_unavailable_frame_and_lock_hook():
    from spice_twisted.sources.x11 import X11Source
    from spice_twisted.sources.x11_capture import unavailable_frame

    frame = unavailable_frame(320, 200, ":5", 3.0)
    assert frame.shape == (200, 320, 4) and frame.dtype == np.uint8
    assert frame[0, 0, :3].tolist() == [52, 44, 40]  # B G R of the background
    assert len(np.unique(frame.reshape(-1, 4), axis=0)) > 2  # there is text on it
    src = X11Source.__new__(X11Source)  # no X needed for the hook
    src.x_lock_state, told = 0, []
    src.report_locks = told.append
    src.x_locks(4)
    src.x_locks(4)
    assert told == [4] and src.x_lock_state == 4
