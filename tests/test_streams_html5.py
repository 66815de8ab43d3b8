"""spice-html5 in headless Chromium plays the demo's video as an MJPEG stream.

spice-html5 advertises MULTI_CODEC and CODEC_MJPEG and draws each STREAM_DATA frame as a
JPEG picture onto its canvas at the stream's rect. The test reads the canvas back while
the video plays (PSNR against the plasma frames the server drew) and after it stops
(exactly the server's framebuffer, through the lossless upgrade).
"""

from __future__ import annotations

from support.images import psnr
from support.processes import as_rgb, wait_until
from test_html5_client import assert_html5_clean, viewer, wait_exact  # noqa: F401 (viewer: a fixture)
from test_pipeline_clients import assert_no_server_errors
from test_streams_clients import AREA, _creates, _frames

from spice_twisted.sources.demo_video import Plasma
from spice_twisted.wire.enums import MsgDisplay


def _best_psnr(v, server, plasma: Plasma) -> float:
    canvas = v.canvas()
    if canvas is None:
        return 0.0
    shown = canvas[AREA]  # RGB
    n = server.stats()["source_state"]["video_frames"]
    return max(psnr(shown, as_rgb(plasma.frame(k))) for k in range(max(0, n - 25), n + 1))


def test_spice_html5_plays_the_mjpeg_stream_and_ends_exact(spawn, viewer):  # noqa: F811
    server = spawn.harness()
    v, conn = viewer(server)
    conn.wait_for(lambda k: len(k.draws()) >= 5, timeout=60, what="the first screen")
    server.command("video on", "video")
    conn.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 10, timeout=60, what="STREAM_CREATE and 10 frames")
    plasma = Plasma()
    assert wait_until(lambda: (q := _best_psnr(v, server, plasma)) >= 30 and q, 40, "spice-html5's video at >= 30 dB")
    server.command("video off", "video")
    conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], timeout=30, what="STREAM_DESTROY")
    server.pause()
    wait_exact(server, v, "the paused demo after the video")
    assert_html5_clean(v)
    assert_no_server_errors(server)
