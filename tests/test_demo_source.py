"""The default demo desktop: it keeps changing, and a real client sees it as the server draws it."""

from __future__ import annotations

import numpy as np
from support.processes import as_rgb

from spice_twisted.render.region import Region
from spice_twisted.sources.demo import BALL, CLOCK_BOX, WELCOME, DemoSource
from spice_twisted.sources.demo_window import LOG, SLIDE


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

        def request_payload(self, d):
            d.request(self.codec)

        def push_drawable(self, d):
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
