"""The default demo desktop: it keeps changing, and a real client sees it as the server draws it."""

from __future__ import annotations

import numpy as np
from support.processes import as_rgb

from spice_twisted.sources.demo import BALL, CLOCK_BOX, DemoSource


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
    ys, xs = np.nonzero(diff)
    # Everything but the clock equals the backdrop except exactly one ball-sized square.
    assert len(ys) > 0
    assert ys.max() - ys.min() < BALL and xs.max() - xs.min() < BALL
    clock = np.any(
        fb[CLOCK_BOX.top : CLOCK_BOX.bottom, CLOCK_BOX.left : CLOCK_BOX.right]
        != backdrop[CLOCK_BOX.top : CLOCK_BOX.bottom, CLOCK_BOX.left : CLOCK_BOX.right],
        axis=2,
    )
    assert clock.sum() > 50  # the clock digits are drawn


def test_demo_commits_only_damage():
    from spice_twisted.render.encoder import Encoder
    from spice_twisted.render.service import RenderService

    src = DemoSource()
    render = RenderService(src.width, src.height, Encoder(reactor=None))
    seen = []

    class Sink:
        def push_drawable(self, d):
            seen.append(d.rect)

    render.sinks.append(Sink())
    src.render = render
    render.primary.pixels[:] = src.backdrop
    src.tick()
    assert seen and all(r.area < 4 * BALL * BALL or r == CLOCK_BOX for r in seen)
