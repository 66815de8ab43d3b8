"""The X11 source's desktop agent against a real X server (TigerVNC's Xvnc, which can resize).

The clipboard is driven directly through the source interface (sources/desktop_agent.py)
on a reactor of the test's own, iterated while real X clients (xclip, xdpyinfo, xrandr, a
python X client that never answers) act on the same display. What X holds is read back
with xclip, what X reports reaches a recording sink. The resize is also shown end to end:
the real server on the display, a real spice-gtk client receiving the new size and the
exact pixels (read back by xwd).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from support import processes
from support.processes import wait_until
from support.xvnc import Xvnc
from twisted.internet import task
from twisted.internet.selectreactor import SelectReactor

from spice_twisted.sources.desktop_agent import PNG, TEXT
from spice_twisted.sources.x11_agent import X11Agent
from spice_twisted.sources.x11_conn import connect


class Sink:
    """The server's side of the interface, as a record of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, bytes] | None]] = []

    def desktop_clipboard(self, selection: str, contents: dict[str, bytes] | None) -> None:
        self.calls.append((selection, contents))


class Desk:
    """An X11Agent attached to `x`, on a reactor that runs only while the test pumps it."""

    def __init__(self, x: Xvnc) -> None:
        self.x = x
        self.reactor = SelectReactor()
        self.sink = Sink()
        self.agent = X11Agent(x.display, True)
        self.agent.start_agent(self.sink)
        self.agent.attach(connect(x.display), self.reactor)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.reactor.iterate(0.02)

    def until(self, pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = pred()
            if got:
                return got
            self.reactor.iterate(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def run(self, *argv: str, stdin: bytes | None = None, timeout: float = 30.0) -> bytes:
        """An X program run to its end while the reactor answers X (xclip -o asks us)."""
        p = subprocess.Popen(argv, env=self.x.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out: list[bytes] = []

        def read() -> None:
            out.append(p.communicate(stdin, timeout=timeout)[0])

        import threading

        t = threading.Thread(target=read)
        t.start()
        try:
            self.until(lambda: not t.is_alive(), timeout + 5, f"{argv} to end")
        finally:
            if p.poll() is None:
                p.kill()
            t.join(5)
        assert p.returncode == 0, (argv, p.returncode)
        return out[0]

    def calls_for(self, selection: str) -> list[dict[str, bytes] | None]:
        return [c for s, c in self.sink.calls if s == selection]

    def close(self) -> None:
        self.agent.detach()


@pytest.fixture
def desk(xvnc: Xvnc) -> Iterator[Desk]:
    d = Desk(xvnc)
    yield d
    d.close()


def xclip_in(x: Xvnc, tmp: Path, data: bytes, selection: str, target: str | None = None) -> subprocess.Popen[bytes]:
    """xclip owning `selection` with `data`, in the foreground until the test ends or another
    client takes the selection."""
    path = tmp / f"xclip-{hashlib.sha1(data).hexdigest()[:8]}"
    path.write_bytes(data)
    argv = ["xclip", "-quiet", "-selection", selection.lower(), "-i", str(path)]
    if target:
        argv += ["-t", target]
    return x.spawn(*argv)


def png_bytes(w: int, h: int, seed: int = 1) -> bytes:
    """A PNG of random pixels (incompressible: its size is about w*h*3 bytes)."""
    px = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


TEXT_SAMPLE = "Grüße, 世界 – clipboard ✓\nsecond line".encode()


# --- out of X -------------------------------------------------------------------------------
@pytest.mark.parametrize("selection", ["CLIPBOARD", "PRIMARY"])
def test_text_copied_in_x_reaches_the_sink(desk, xvnc, tmp_path, selection):
    xclip_in(xvnc, tmp_path, TEXT_SAMPLE, selection)
    got = desk.until(lambda: desk.calls_for(selection), what=f"{selection} reported")
    assert got == [{TEXT: TEXT_SAMPLE}]
    other = "PRIMARY" if selection == "CLIPBOARD" else "CLIPBOARD"
    assert desk.calls_for(other) == []


def test_a_png_copied_in_x_reaches_the_sink_and_the_owner_leaving_clears_it(desk, xvnc, tmp_path):
    png = png_bytes(700, 500)  # ~1 MB: past one property on xclip's side (INCR)
    owner = xclip_in(xvnc, tmp_path, png, "CLIPBOARD", PNG)
    got = desk.until(lambda: desk.calls_for("CLIPBOARD"), what="the PNG reported")
    assert got == [{PNG: png}]
    assert desk.agent.clipboard.counters["incr_in"] == 1
    owner.terminate()
    owner.wait(5)
    desk.until(lambda: len(desk.calls_for("CLIPBOARD")) == 2, what="the owner's exit reported")
    assert desk.calls_for("CLIPBOARD")[1] is None


def test_a_selection_past_max_clipboard_is_not_taken(desk, xvnc, tmp_path):
    desk.agent.clipboard.max_bytes = 4096
    xclip_in(xvnc, tmp_path, b"x" * 10_000, "CLIPBOARD")
    got = desk.until(lambda: desk.calls_for("CLIPBOARD"), what="the oversized selection reported")
    assert got == [None]  # nothing within the bound: no contents
    assert desk.agent.clipboard.counters["too_large"] >= 1


# --- into X ---------------------------------------------------------------------------------
def test_text_set_by_a_client_is_read_back_by_xclip_from_clipboard_and_primary(desk):
    desk.agent.set_clipboard("CLIPBOARD", {TEXT: TEXT_SAMPLE})
    desk.agent.set_clipboard("PRIMARY", {TEXT: b"the primary one"})
    assert desk.run("xclip", "-o", "-selection", "clipboard") == TEXT_SAMPLE
    assert desk.run("xclip", "-o", "-selection", "clipboard", "-t", TEXT) == TEXT_SAMPLE
    assert desk.run("xclip", "-o", "-selection", "primary") == b"the primary one"
    assert desk.run("xclip", "-o", "-selection", "primary", "-t", "STRING") == b"the primary one"
    targets = desk.run("xclip", "-o", "-selection", "clipboard", "-t", "TARGETS").decode().split()
    assert set(targets) == {"TARGETS", "TIMESTAMP", "UTF8_STRING", TEXT, "TEXT", "STRING"}
    assert desk.sink.calls == []  # our own ownership never comes back as the desktop's
    desk.agent.set_clipboard("CLIPBOARD", None)  # released: X has no owner any more
    owner = desk.until(lambda: _owner(desk, "CLIPBOARD") == 0 or None, what="CLIPBOARD released")
    assert owner is True
    assert desk.sink.calls == []


def _owner(desk: Desk, selection: str) -> int:
    conn = desk.agent.x.conn
    atom = desk.agent.clipboard.atom[selection]
    return conn.core.GetSelectionOwner(atom).reply().owner


def test_a_png_set_by_a_client_is_read_back_by_xclip_in_increments(desk):
    png = png_bytes(600, 400, seed=2)  # ~720 kB: sent by INCR, 256 kB at a time
    desk.agent.set_clipboard("CLIPBOARD", {TEXT: b"alt text", PNG: png})
    assert desk.run("xclip", "-o", "-selection", "clipboard", "-t", PNG) == png
    assert desk.agent.clipboard.counters["incr_out"] == 1
    targets = desk.run("xclip", "-o", "-selection", "clipboard", "-t", "TARGETS").decode().split()
    assert PNG in targets
    assert desk.sink.calls == []


def test_no_echo_then_an_x_copy_takes_over(desk, xvnc, tmp_path):
    """Our ownership is never reported; another client's copy after it is, once."""
    desk.agent.set_clipboard("CLIPBOARD", {TEXT: b"from a client"})
    assert desk.run("xclip", "-o", "-selection", "clipboard") == b"from a client"
    desk.pump(1.0)
    assert desk.sink.calls == []
    xclip_in(xvnc, tmp_path, b"from X", "CLIPBOARD")
    desk.until(lambda: desk.calls_for("CLIPBOARD"), what="the X copy reported")
    desk.pump(0.5)
    assert desk.sink.calls == [("CLIPBOARD", {TEXT: b"from X"})]
    assert "CLIPBOARD" not in desk.agent.clipboard.owned  # we lost it (SelectionClear)


HUNG_OWNER = """
import sys, time, xcffib, xcffib.xproto
c = xcffib.connect(display=sys.argv[1])
root = c.get_setup().roots[0].root
w = c.generate_id()
c.core.CreateWindow(0, w, root, 0, 0, 1, 1, 0, xcffib.xproto.WindowClass.InputOnly, 0, 0, [])
atom = c.core.InternAtom(False, 9, "CLIPBOARD").reply().atom
c.core.SetSelectionOwner(w, atom, 0)
c.flush()
print("owned", flush=True)
time.sleep(600)  # never reads its SelectionRequests
"""


def test_a_hung_selection_owner_times_out_without_blocking(desk, xvnc):
    desk.agent.clipboard.timeout = 2.0
    ticks: list[float] = []
    beat = task.LoopingCall(lambda: ticks.append(time.monotonic()))
    beat.clock = desk.reactor
    beat.start(0.1)
    hung = xvnc.spawn(sys.executable, "-c", HUNG_OWNER, xvnc.display, stdout=subprocess.PIPE)
    assert hung.stdout is not None and hung.stdout.readline() == b"owned\n"
    t0 = time.monotonic()
    desk.until(lambda: desk.calls_for("CLIPBOARD"), 15, "the hung owner given up")
    waited = time.monotonic() - t0
    assert desk.calls_for("CLIPBOARD") == [None]
    assert desk.agent.clipboard.counters["fetch_timeouts"] == 1
    assert waited >= 1.5  # the timer, not a refusal, ended it
    # the reactor went on all along: its 0.1 s beat never stopped for more than a moment
    gaps = np.diff([t for t in ticks if t >= t0])
    assert len(gaps) > 10 and gaps.max() < 1.5, gaps.max()  # blocked, it would wait the 2 s out (or forever)
    # and the clipboard still works the other way
    desk.agent.set_clipboard("CLIPBOARD", {TEXT: b"after the hang"})
    assert desk.run("xclip", "-o", "-selection", "clipboard") == b"after the hang"
    beat.stop()


# --- resize ---------------------------------------------------------------------------------
def test_resize_to_a_listed_mode_and_to_an_odd_size_with_no_mode(desk, xvnc):
    assert desk.agent.can_resize
    desk.agent.resize(1024, 768)
    assert xvnc.size() == (1024, 768)
    assert "spice-1001x667" not in xvnc.run("xrandr").stdout
    desk.agent.resize(1001, 667)  # no such mode: one is made and added to the output
    assert xvnc.size() == (1001, 667)
    modes = xvnc.run("xrandr").stdout
    assert "spice-1001x667" in modes
    assert desk.agent.resizes == 2
    desk.agent.resize(100000, 100)  # past the server's range: refused, nothing changes
    assert xvnc.size() == (1001, 667)
    assert desk.agent.resize_refused == 1


def test_a_resize_reaches_a_spice_gtk_client_with_exact_pixels(spawn, xvnc):
    xvnc.run("xsetroot", "-solid", "#336699")
    server = spawn.harness("--source", f"x11:{xvnc.display}", "--disable-ticketing")
    client = spawn.client("--port", str(server.port))
    client.wait_event("primary-create", width=800, height=600)
    xvnc.spawn("xlogo", "-geometry", "300x250+400+200")
    processes.wait_match(xvnc.root_image, [client], "the X root window", 25, 0.3)
    for w, h in ((1024, 768), (1001, 667)):
        r = server.command(f"agent_resize {w} {h}", "agent_resize")
        assert r.get("error") is None, r
        assert xvnc.size() == (w, h)
        client.wait_event("primary-create", width=w, height=h)
        root = processes.wait_match(xvnc.root_image, [client], "the X root window", 25, 0.3)
        assert root.shape == (h, w, 3)
        wait_until(lambda w=w, h=h: server.framebuffer().shape[:2] == (h, w), 10, "the server's surface resized")
    assert server.stats()["source_state"]["agent"]["resizes"] == 2


# --- in the real server ---------------------------------------------------------------------
def server_calls(server) -> list:
    out = []
    for sel, contents in server.command("agent_calls", "agent_calls")["calls"]:
        out.append((sel, None if contents is None else {k: base64.b64decode(v) for k, v in contents.items()}))
    return out


def test_the_x11_source_serves_the_clipboard_from_its_reactor_and_after_x_comes_back(spawn, xvnc, tmp_path):
    server = spawn.harness("--source", f"x11:{xvnc.display}", "--disable-ticketing")
    server.command("agent_record", "agent_record")
    state = server.command("agent_state", "agent_state")
    assert state == {"reply": "agent_state", "clipboard_types": sorted([PNG, TEXT]), "can_resize": True}
    wait_until(lambda: server.stats()["source_state"]["agent"].get("clipboard"), 20, "the agent's X connection")
    owner = xclip_in(xvnc, tmp_path, b"copied in X", "CLIPBOARD")
    wait_until(lambda: server_calls(server), 20, "the X copy reported")
    assert server_calls(server) == [("CLIPBOARD", {TEXT: b"copied in X"})]
    owner.terminate()
    owner.wait(5)
    wait_until(lambda: len(server_calls(server)) == 2, 20, "the X owner's exit reported")
    path = tmp_path / "copy.json"
    path.write_text(json.dumps({TEXT: base64.b64encode(b"a client's copy").decode()}))
    server.command(f"agent_set_clipboard CLIPBOARD {path}", "agent_set_clipboard")
    assert xvnc.run("xclip", "-o", "-selection", "clipboard").stdout == "a client's copy"
    # X dies and comes back: the client's copy is owned again on the new connection
    xvnc.kill()
    xvnc.restart()
    wait_until(
        lambda: xvnc.run("xclip", "-o", "-selection", "clipboard", check=False).stdout == "a client's copy",
        30,
        "the client's copy owned again",
    )
    assert len(server_calls(server)) == 2  # and never reported back as the desktop's
