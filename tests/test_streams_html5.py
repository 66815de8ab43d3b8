"""spice-html5 in headless Chromium plays the demo's video as an MJPEG stream and as VP8.

spice-html5 advertises MULTI_CODEC and CODEC_MJPEG and draws each STREAM_DATA frame as a
JPEG picture onto its canvas at the stream's rect. The test reads the canvas back while
the video plays (PSNR against the plasma frames the server drew) and after it stops
(exactly the server's framebuffer, through the lossless upgrade). For VP8 (CODEC_VP8,
advertised where the browser's MediaSource takes WebM VP8) it plays the frames in a
<video> element over the rect; the test reads that element's picture instead.
"""

from __future__ import annotations

import base64
import itertools
import time

import numpy as np
from support import ffplay
from support.images import psnr
from support.inprocess import Reader, make_server, noise, open_display
from support.processes import as_rgb, wait_until
from support.tapped import connect
from test_html5_client import assert_html5_clean, viewer, wait_exact  # noqa: F401 (viewer: a fixture)
from test_pipeline_clients import assert_no_server_errors
from test_streams import PLAYS, VP8_CAPS, _play, _report, _stamps
from test_streams_clients import AREA, STREAM_DATA, _creates, _frames, clip  # noqa: F401 (clip: a fixture)

from spice_twisted.codecs.video import is_key_frame
from spice_twisted.sources.demo_video import VIDEO, Plasma
from spice_twisted.wire.enums import DisplayCap, MsgDisplay
from spice_twisted.wire.messages import decode_body


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


# The <video> spice-html5 put over the canvas for a VP8 stream: where it sits against the
# canvas, its playback state, and its current picture drawn into an offscreen canvas (the
# pixels Chromium decoded), read back as RGBA in base64.
READ_VIDEO = """
const v = document.querySelector('#screen video'), c = document.querySelector('#screen canvas');
if (!v || !c) return null;
const r = v.getBoundingClientRect(), cr = c.getBoundingClientRect();
const info = {left: r.left - cr.left, top: r.top - cr.top, w: v.videoWidth, h: v.videoHeight, paused: v.paused,
  ready: v.readyState, error: v.error && v.error.message, decoded: v.getVideoPlaybackQuality().totalVideoFrames};
if (!v.videoWidth || v.readyState < 2) return [info, null];
const g = new OffscreenCanvas(v.videoWidth, v.videoHeight).getContext('2d', {willReadFrequently: true});
g.drawImage(v, 0, 0);
const d = g.getImageData(0, 0, v.videoWidth, v.videoHeight).data;
let s = '';
for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
return [info, btoa(s)];
"""

# Chromium shows spice-html5's VP8 at 23-24 dB against the plasma: what the frames give
# through BT.709's matrix, though coded BT.601 (25.5-27 dB so; spice-html5's WebM track has
# no Colour element); a stalled, stale or wrong picture (the first frame) is under 10 dB.
VP8_HTML5_DB = 21


def _video(v) -> tuple[dict, np.ndarray | None] | None:
    """spice-html5's <video> (None: there is none): its state and its picture (RGB)."""
    r = v.driver.execute_script(READ_VIDEO)
    if r is None:
        return None
    info, data = r
    px = None if data is None else np.frombuffer(base64.b64decode(data), np.uint8).reshape(info["h"], info["w"], 4)[..., :3]
    return info, px


def _video_psnr(v, server, plasma: Plasma) -> float:
    got = _video(v)
    if got is None or got[1] is None or got[1].shape[:2] != (VIDEO.height, VIDEO.width):
        return 0.0
    n = server.stats()["source_state"]["video_frames"]
    return max(psnr(got[1], as_rgb(plasma.frame(k))) for k in range(max(0, n - 25), n + 1))


def test_spice_html5_plays_the_vp8_stream_in_a_video_element_and_ends_exact(spawn, viewer):  # noqa: F811
    """spice-html5 advertises CODEC_VP8 where Chromium's MediaSource takes WebM VP8; with
    `--video-codecs` preferring VP8 it gets a VP8 stream, muxes each STREAM_DATA into WebM
    (timecodes from the multimedia times) for a <video> over the stream's rect, and Chromium
    decodes it. The click first is the user's: spice-html5's <video> is not muted, so
    Chromium's autoplay policy lets it play only on a page the user has interacted with."""
    server = spawn.harness("--video-codecs", "gstreamer:vp8;spice:mjpeg")
    v, conn = viewer(server)
    conn.wait_for(lambda k: len(k.draws()) >= 5, timeout=60, what="the first screen")
    v.driver.find_element("id", "messages").click()  # not the canvas: no input to the server
    server.command("video on", "video")
    conn.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 10, timeout=60, what="STREAM_CREATE and 10 frames")
    (create,) = _creates(conn)
    assert create["codec_type"] == 2 and (create["stream_width"], create["stream_height"]) == (VIDEO.width, VIDEO.height)
    assert is_key_frame(_frames(conn)[0])
    plasma = Plasma()
    ok = wait_until(lambda: (q := _video_psnr(v, server, plasma)) >= VP8_HTML5_DB and q, 40, "spice-html5's VP8 video")
    assert ok, f"best {_video_psnr(v, server, plasma):.1f} dB; video {(_video(v) or ({},))[0]}\n{v.diagnostics()}"
    info, _ = _video(v)
    assert (info["left"], info["top"]) == (VIDEO.left, VIDEO.top), info  # over the stream's rect
    assert wait_until(lambda: (i := _video(v)[0])["decoded"] >= 10 and not i["paused"], 20, "10 frames played"), _video(v)[0]
    stamps = [decode_body(STREAM_DATA, b)["multi_media_time"] for t, b in conn.snapshot() if t == MsgDisplay.STREAM_DATA]
    assert all(a < b for a, b in itertools.pairwise(stamps))  # WebM block timecodes only go forward
    server.command("video off", "video")
    conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], timeout=30, what="STREAM_DESTROY")
    assert wait_until(lambda: _video(v) is None, 20, "the <video> removed")
    server.pause()
    wait_exact(server, v, "the paused demo after the VP8 video")
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_a_window_over_a_playing_video_stays_exact_in_spice_html5_beside_spice_gtk(spawn, viewer, tap_for, xvfb_factory, clip):  # noqa: F811
    """xlogo opened over part of ffplay's playing video. spice-html5 keeps a stream's
    STREAM_CLIP but draws every frame whole, so the frames would paint over the window;
    the server ends the stream on that client once it is clipped and sends the area as
    images: the window stays exact in the canvas while the video plays around it. spice-gtk,
    which honours the clip, keeps the stream."""
    xvfb = xvfb_factory(size=(1024, 768), solid="#336699")
    # (Images never JPEG, whatever the link estimate says: the window's pixels are exact.)
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing", "--jpeg-wan-compression", "never")
    v, conn = viewer(server)
    _, (gtk,), (gtk_conn,) = connect(server, tap_for, 1)
    _, win = ffplay.play(xvfb, clip, 200, 150)
    for c in (conn, gtk_conn):
        c.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 5, 60, "the stream")
    xvfb.spawn("xlogo", "-geometry", f"160x100+{win.left - 20}+{win.top - 10}")  # over the video's top-left corner
    # The 8-pixel tiles of the video that xlogo covers wholly (as in test_streams_clients).
    over = (slice(win.top, win.top + 88), slice(win.left, win.left + 136))

    def exact() -> bool:
        canvas = v.canvas()
        return canvas is not None and np.array_equal(canvas[over][..., :3], xvfb.root_image()[over])  # (RGBA, RGB)

    conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 30, "the stream ended for spice-html5")
    wait_until(exact, 30, "the window over the video exact in spice-html5")
    mark, gtk_mark = conn.mark(), gtk_conn.mark()
    conn.wait_for(lambda k: len(k.draws(mark)) >= 10, 30, "10 more pictures of the video")
    for _ in range(20):  # the video's pictures leave the window alone: exact at every look
        assert exact()
        time.sleep(0.1)
    assert not _frames(conn, mark) and not _creates(conn, mark)  # as images, not a stream again
    gtk_conn.wait_for(lambda k: len(_frames(k, gtk_mark)) >= 10, 30, "spice-gtk's stream goes on")
    assert MsgDisplay.STREAM_DESTROY not in [t for t, _ in gtk_conn.snapshot()]
    assert MsgDisplay.STREAM_CLIP in [t for t, _ in gtk_conn.snapshot()]
    assert_html5_clean(v)
    assert_no_server_errors(server)


def test_a_vp8_streams_stamps_only_go_forward_when_reports_shrink_the_play_ahead():
    """In-process, on a still clock: a report that frames come 200 ms early shrinks the
    play-ahead; an MJPEG client's next frames are stamped earlier, a VP8 client's are not
    (spice-html5 makes its frames WebM blocks, and Chromium fails the whole <video> on a
    block whose timecode goes back: "Got a block with a timecode before the previous block")."""
    srv = make_server()
    srv.display_settings.video_codecs = ("vp8", "mjpeg")
    noise(srv)
    readers = [Reader(*open_display(srv, {*caps, DisplayCap.STREAM_REPORT})) for caps in (VP8_CAPS, PLAYS)]
    for r in readers:
        r.catch_up(srv)
    srv.mm_time = lambda: 5000  # a still clock: only the play-ahead moves the stamps
    _play(srv, readers, 6)
    before = [_stamps(r) for r in readers]
    for r in readers:
        _report(r, srv, 20, 0, 200)
    marks = [len(r.messages) for r in readers]
    _play(srv, readers, 4, first=6)
    after = [_stamps(r, m) for r, m in zip(readers, marks, strict=True)]
    assert max(after[1]) < min(before[1])  # MJPEG: the play-ahead shrank, its frames stamped earlier
    vp8 = before[0] + after[0]
    assert len(after[0]) == 4 and all(a < b for a, b in itertools.pairwise(vp8)), vp8
