"""The default demo desktop: it keeps changing, and a real client sees it as the server draws it."""

from __future__ import annotations

import shlex
import time

import numpy as np
from support.processes import as_rgb, connect_clients, free_port, wait_until
from support.startup import connect_block, field

from spice_twisted.render.region import Region
from spice_twisted.sources.demo import BALL, CLOCK_BOX, WELCOME, DemoSource
from spice_twisted.sources.demo_log import LINE_H, line_pixels
from spice_twisted.sources.demo_window import LOG, SLIDE, connect_lines


def test_demo_is_default_and_client_sees_it_change(spawn):
    srv = spawn.server()  # no --source: the demo
    client = spawn.client("--port", str(srv.port))
    ev = client.wait_event("primary-create")
    assert (ev["width"], ev["height"]) == (1024, 768)
    client.wait_event("mark")
    first = client.stats()["invalidates"]
    import time

    time.sleep(1.0)
    assert client.stats()["invalidates"] > first + 5  # the ball moves at 20 fps

    fb = as_rgb(client.framebuffer())
    backdrop = DemoSource(urls=[f"spice://127.0.0.1:{srv.port}"]).canvas[..., [2, 1, 0]]  # before anyone draws
    diff = np.any(fb != backdrop, axis=2)
    diff[CLOCK_BOX.top : CLOCK_BOX.bottom, CLOCK_BOX.left : CLOCK_BOX.right] = False
    for live in (LOG, SLIDE):  # the window's log and slideshow change on their own
        x, y = WELCOME.left, WELCOME.top
        diff[live.top + y : live.bottom + y, live.left + x : live.right + x] = False
    ys, xs = np.nonzero(diff)
    # Everything but the clock, the log and the slideshow equals the backdrop except exactly one ball-sized square.
    assert len(ys) > 0
    assert ys.max() - ys.min() < BALL and xs.max() - xs.min() < BALL
    clock = np.any(
        fb[CLOCK_BOX.top : CLOCK_BOX.bottom, CLOCK_BOX.left : CLOCK_BOX.right]
        != backdrop[CLOCK_BOX.top : CLOCK_BOX.bottom, CLOCK_BOX.left : CLOCK_BOX.right],
        axis=2,
    )
    assert clock.sum() > 50  # the clock digits are drawn


def _demo_with_sink():
    from twisted.internet.task import Clock

    from spice_twisted.render.cursor import CursorService
    from spice_twisted.render.service import RenderService

    src = DemoSource()
    render = RenderService(src.width, src.height, Clock())
    seen = []

    class Sink:
        codec = "bitmap"
        accepting = True
        lossy = Region()
        idle = True

        def codecs_now(self):
            return self.codec, self.codec

        def request_payload(self, d, codec):
            d.request(codec)
            return True

        def push_drawable(self, d, codec=None):
            seen.append(d.rect)

        def push_copy(self, op):
            seen.append(op.dest)

    src.start(render, CursorService())
    render.flush()
    render.sinks.append(Sink())
    return src, render, seen


def test_demo_marks_only_damage():
    src, render, seen = _demo_with_sink()
    src.tick()
    render.flush()
    assert seen and all(r.area < 4 * BALL * BALL or r == CLOCK_BOX for r in seen)


def test_a_flood_of_input_costs_one_frame():
    from spice_twisted.inputs import InputOrigin
    from spice_twisted.sources.demo import TEXT_BOX

    src, render, seen = _demo_with_sink()
    origin = InputOrigin(1, (255, 0, 0))
    for i in range(5000):  # a typed flood and a scribble, all before the next frame
        src.key(origin, 0x1E, True)
        src.pointer(origin, 100 + i % 700, 100 + (i * 7) % 500, 1)
    frames = render.counters.frames
    render.flush()
    assert render.counters.frames == frames + 1
    assert 0 < len(seen) <= render.max_rects  # one frame's drawables, however many events
    assert src.typed.endswith("a" * 60)
    text = render.primary.pixels[TEXT_BOX.top : TEXT_BOX.bottom, TEXT_BOX.left : TEXT_BOX.right]
    assert np.array_equal(text, src.canvas[TEXT_BOX.top : TEXT_BOX.bottom, TEXT_BOX.left : TEXT_BOX.right])
    red = np.all(render.primary.pixels[..., :3] == (0, 0, 255), axis=2)  # B G R: the stroke is red
    assert red[100:600, 100:800].sum() > 5000


def _welcome_text(rgb: np.ndarray) -> np.ndarray:
    """The window's text rows, above the ball's start (y 300) and the log."""
    return rgb[WELCOME.top : WELCOME.top + 200, WELCOME.left : WELCOME.right]


def test_demo_connect_hint_on_a_tls_server_names_the_ca_and_works(spawn, certs):
    """The demo shows the TLS viewer command as the start-up block has it, with
    --spice-ca-file; a client given exactly that URL and CA connects over TLS."""
    tls_port = free_port()
    srv = spawn.harness(
        "--tls-port", str(tls_port), "--cert", str(certs["cert"]), "--key", str(certs["key"]), "--tls-ca", str(certs["ca"]), paused=True
    )
    block = wait_until(lambda: "how to connect:" in srv.stderr() and connect_block(srv.stderr()), what="the connect block")
    (plain,) = field(block, "SPICE URL")
    (tls,) = field(block, "TLS URL")
    (viewer,) = field(block, "TLS viewer")
    argv = shlex.split(viewer)
    assert argv == ["remote-viewer", f"--spice-ca-file={certs['ca']}", tls]
    client = spawn.client("--uri", tls, "--ca-file", str(certs["ca"]), "--tls-only")
    client.wait_event("mark")
    client.wait_quiet(0.3)
    shown = _welcome_text(as_rgb(client.framebuffer()))
    assert np.array_equal(shown, _welcome_text(DemoSource(urls=[plain, tls], ca_file=str(certs["ca"])).canvas[..., [2, 1, 0]]))
    assert not np.array_equal(shown, _welcome_text(DemoSource(urls=[plain, tls]).canvas[..., [2, 1, 0]]))
    assert connect_lines([tls], str(certs["ca"]))[1] == f"  {viewer}  (TLS)"  # what is drawn is the block's command
    # Without --tls-ca the demo says a CA is needed, as the block does.
    assert "--spice-ca-file=CA.pem" in " ".join(connect_lines([tls]))


def test_demo_log_names_clients_in_hex_as_the_server_log_does(spawn):
    """A typed line in the demo's log names its client as the server log and the admin
    site do (0x...): the line on the client's screen is drawn exactly so."""
    srv = spawn.harness(paused=True)
    (client,) = connect_clients(spawn, srv, 1)
    (info,) = srv.stats()["clients"]
    sid = info["id"]
    assert f"client {sid:#x} connected from" in srv.stderr()
    before = time.time()
    for key in (0x23, 0x17, 0x1C):  # h, i, Enter
        client.send(f"key {key:#x}")
    wait_until(lambda: srv.stats()["source_state"]["log_lines"] >= 1, what="the typed line in the log")
    after = time.time()
    stamps = {time.strftime("%H:%M:%S", time.localtime(t)) for t in np.arange(int(before), after + 1, 1.0)}
    x, y = WELCOME.left + LOG.left, WELCOME.top + LOG.bottom - LINE_H

    def last_line_is(text: str) -> bool:
        fb = as_rgb(client.framebuffer())[y : y + LINE_H, x : x + LOG.width]
        return any(np.array_equal(fb, line_pixels(f"{s}  {text}", LOG.width)[..., [2, 1, 0]]) for s in stamps)

    wait_until(lambda: last_line_is(f"client {sid:#x}: hi"), what="the line on the client's screen")
    assert not last_line_is(f"client {sid}: hi")
