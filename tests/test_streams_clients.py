"""Video streams with real spice-gtk clients, each through a wire tap (render/streams.py).

The demo's video window (a generated plasma, sources/demo_video.py) is redrawn at the
demo's tick rate: the render service makes it a stream. The taps show STREAM_CREATE over
the video's rect and STREAM_DATA frames; each client's decoded picture of the area is
compared by PSNR with the plasma frames the server drew (a frame is a function of its
number, so the test recomputes them); encodes are counted at the codec boundary
(codecs.ENCODERS, wrapped by the harness); after the video stops every client is exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import ffplay
from support.images import psnr
from support.processes import as_rgb, wait_match, wait_until
from support.tapped import connect

from spice_twisted.render.rect import Rect
from spice_twisted.sources.demo_video import VIDEO, Plasma
from spice_twisted.wire.enums import ChannelType, DisplayCap, MsgcDisplay, MsgDisplay
from spice_twisted.wire.messages import decode_body, message

STREAM_CREATE = message(ChannelType.DISPLAY, "STREAM_CREATE")
STREAM_DATA = message(ChannelType.DISPLAY, "STREAM_DATA")
AREA = (slice(VIDEO.top, VIDEO.bottom), slice(VIDEO.left, VIDEO.right))


def _frames(conn, start: int = 0) -> list[bytes]:
    """The MJPEG data of every STREAM_DATA the tap saw from server message `start` on."""
    return [decode_body(STREAM_DATA, body)["data"] for t, body in conn.snapshot(start) if t == MsgDisplay.STREAM_DATA]


def _creates(conn, start: int = 0) -> list[dict]:
    return [decode_body(STREAM_CREATE, body) for t, body in conn.snapshot(start) if t == MsgDisplay.STREAM_CREATE]


def _best_psnr(client, server, plasma: Plasma) -> float:
    """How close the client's video area is to the nearest of the frames the server drew
    lately (the client plays a little behind: frames are stamped ahead of the clock)."""
    shown = client.framebuffer()[AREA]
    n = server.stats()["source_state"]["video_frames"]
    return max(psnr(shown, plasma.frame(k)) for k in range(max(0, n - 25), n + 1))


def _start_video(server, conns) -> None:
    server.command("count_codecs", "count_codecs")
    server.command("video on", "video")
    for conn in conns:
        conn.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 10, 30, "STREAM_CREATE and 10 frames")


def test_the_demo_video_plays_as_an_mjpeg_stream_shared_by_four_clients_and_ends_exact(spawn, tap_for):
    server = spawn.harness()  # the demo, its video off
    taps, clients, conns = connect(server, tap_for, 4)
    marks = [c.mark() for c in conns]
    _start_video(server, conns)
    for conn in conns:
        (create,) = _creates(conn)
        assert create["dest"] == {"top": VIDEO.top, "left": VIDEO.left, "bottom": VIDEO.bottom, "right": VIDEO.right}
        assert create["codec_type"] == 1 and create["flags"] == 1  # MJPEG, top-down rows
        assert (create["stream_width"], create["stream_height"]) == (VIDEO.width, VIDEO.height)
        assert all(f[:2] == b"\xff\xd8" for f in _frames(conn))  # JFIF frames
    # While it plays, the video's rect is no longer sent as images.
    later = [c.mark() for c in conns]
    wait_until(lambda: all(len(_frames(c, m)) >= 10 for c, m in zip(conns, later, strict=True)), 30, "10 more frames each")
    for conn, m in zip(conns, later, strict=True):
        assert not [d for d in conn.draws(m) if VIDEO.contains(Rect(*d.box))], "the video's area went as an image while streaming"
    # Decoded by spice-gtk, the picture stays near the source's frames.
    plasma = Plasma()
    for c in clients:
        assert wait_until(lambda c=c: (q := _best_psnr(c, server, plasma)) >= 30 and q, 30, "the client's video at >= 30 dB")
    # Encoded once for the four: at the codec boundary, at most one MJPEG encode per frame
    # made, while the clients received about four times as many.
    received = [_frames(c) for c in conns]
    calls = server.command("codec_calls", "codec_calls")["calls"]  # after: it counts at least those
    distinct = {f for frames in received for f in frames}
    assert len(distinct) <= calls["mjpeg"] + calls.get("mjpeg_low", 0)
    assert sum(len(f) for f in received) >= 3 * calls["mjpeg"], (calls, [len(f) for f in received])
    assert set.intersection(*(set(r) for r in received))  # the very same bytes to all
    # The video stops: the stream ends and every client converges to the exact picture.
    server.command("video off", "video")
    for conn in conns:
        conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 30, "STREAM_DESTROY")
    server.pause()  # the ball and clock stand still: the final picture
    server.command("flush", "flush")
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    for conn, m in zip(conns, marks, strict=True):
        assert MsgDisplay.STREAM_CREATE in [t for t, _ in conn.snapshot(m)]


def test_a_client_joining_mid_video_gets_the_stream_at_once(spawn, tap_for):
    server = spawn.harness()
    _, _, first = connect(server, tap_for, 1)
    _start_video(server, first)
    _, late, (conn,) = connect(server, tap_for, 1)
    types = [t for t, _ in conn.snapshot()]
    mark = types.index(MsgDisplay.MARK)
    # Right after its first screen: STREAM_CREATE, then a frame, before any other drawing.
    create = types.index(MsgDisplay.STREAM_CREATE)
    assert create > mark
    conn.wait_for(lambda k: _frames(k), 15, "its first frame")
    types = [t for t, _ in conn.snapshot()]
    first_data = types.index(MsgDisplay.STREAM_DATA)
    assert first_data > create
    between = [t for t in types[mark + 1 : first_data] if t not in (MsgDisplay.STREAM_CREATE,)]
    assert len(between) <= 8, [MsgDisplay(t).name if t in MsgDisplay._value2member_map_ else t for t in between]
    plasma = Plasma()
    assert wait_until(lambda: (q := _best_psnr(late[0], server, plasma)) >= 30 and q, 30, "the late client's video at >= 30 dB")


def _chroma(jfif: bytes) -> str:
    """The JFIF's luma sampling factors ("444", "422", "420"): which tier encoded it."""
    i = jfif.index(b"\xff\xc0")  # baseline SOF0: length, precision, height, width, components
    h, v = jfif[i + 11] >> 4, jfif[i + 11] & 15
    return {(1, 1): "444", (2, 1): "422", (2, 2): "420"}[(h, v)]


def _quality(jfif: bytes) -> int:
    """The JPEG quality of a libjpeg frame, from its luma table's DC step (16 scaled by
    libjpeg's quality formula: 10 at 70, 13 at 60, 16 at 50): which MJPEG tier made it."""
    i = jfif.index(b"\xff\xdb")  # DQT: length, then precision/table id, then 64 steps
    return {10: 70, 13: 60, 16: 50}.get(jfif[i + 5], 0)


def test_clients_on_slow_links_play_the_low_and_least_tiers_while_the_others_keep_the_full_one(spawn, tap_for):
    """2 Mbit/s: the low tier (every other frame, quality 60); 0.8 Mbit/s, where the low
    tier's 1 Mbit/s would not fit: the least tier (every fourth, quality 50). Both are
    judged by the server's own measure of their links; the tiers are read off the frames."""
    server = spawn.harness()
    taps = []
    for rate in (250_000, 100_000):  # 2 and 0.8 Mbit/s, 50 ms: judged WAN by the server's own measure
        tap, client = tap_for(server)
        tap.shape(rate=rate, delay=0.05)
        taps.append((tap, client))
    (slow_tap, slow), (slower_tap, slower) = taps
    for _, c in taps:
        c.wait_event("mark", timeout=60)
    slow_conn, slower_conn = slow_tap.display(), slower_tap.display()
    wait_until(lambda: sum(c["link"]["wan"] for c in server.stats()["clients"]) == 2, 30, "the slow clients judged WAN")
    _, fast, fast_conns = connect(server, tap_for, 2)
    _start_video(server, [slow_conn, *fast_conns])
    wait_until(lambda: all(len(_frames(c)) >= 40 for c in fast_conns), 30, "40 frames each on the fast links")
    for conn in fast_conns:
        assert {(_chroma(f), _quality(f)) for f in _frames(conn)} == {("444", 70)}  # the full tier
    assert {(_chroma(f), _quality(f)) for f in _frames(slow_conn)} == {("422", 60)}  # the low tier
    assert len(_frames(slow_conn)) < min(len(_frames(c)) for c in fast_conns)  # half the frames, or fewer
    assert not set(_frames(slow_conn)) & set(_frames(fast_conns[0]))
    slower_conn.wait_for(lambda k: sum(_quality(f) == 50 for f in _frames(k)) >= 3, 30, "3 frames of the least tier")
    least = [f for f in _frames(slower_conn) if _quality(f) == 50]  # its first frame may be low: not yet measured
    assert len(least) >= 3 and {_chroma(f) for f in least} == {"422"}
    assert len(_frames(slower_conn)) <= 0.6 * len(_frames(slow_conn)) + 1  # a quarter of the frames, or fewer
    calls = server.command("codec_calls", "codec_calls")["calls"]
    assert calls["mjpeg_low"] >= 1 and calls["mjpeg"] >= 40 and calls["mjpeg_min"] >= len(set(least))
    plasma = Plasma()
    assert wait_until(lambda: (q := _best_psnr(slow, server, plasma)) >= 28 and q, 30, "the slow client's video at >= 28 dB")
    assert wait_until(lambda: (q := _best_psnr(slower, server, plasma)) >= 26 and q, 30, "the slower client's video at >= 26 dB")


def test_stats_show_the_stream_and_who_plays_it(spawn, tap_for):
    server = spawn.harness("--stats-interval", "0.3")
    _, _, conns = connect(server, tap_for, 1)
    _start_video(server, conns)
    # The --stats-interval log line: the stream, and the client's tier and frames.
    wait_until(lambda: re.search(r"stats: clients=1 .* streams=1 \[.* video=mjpeg/\d+", server.stderr()), 15, "a stats line with the video")
    st = server.stats()
    (active,) = st["render"]["streams"]["active"]
    assert active["rect"] == list(VIDEO) and st["render"]["streams"]["started"] == 1
    (display,) = [ch for c in st["clients"] for ch in c["channels"] if ch["channel"] == "display"]
    assert display["streams"]["playing"] == [active["id"]] and display["streams"]["frames_sent"] >= 10
    # spice-gtk advertises STREAM_REPORT: asked to (STREAM_ACTIVATE_REPORT), it reports.
    assert MsgDisplay.STREAM_ACTIVATE_REPORT in [t for t, _ in conns[0].snapshot()]
    conns[0].wait_for(lambda k: any(t == MsgcDisplay.STREAM_REPORT for t, _ in k.client_messages), 30, "a STREAM_REPORT")
    wait_until(lambda: _display_stats(server)["streams"]["reports"] >= 1, 15, "the report counted")


def _display_stats(server) -> dict:
    (display,) = [ch for c in server.stats()["clients"] for ch in c["channels"] if ch["channel"] == "display"]
    return display


def test_streaming_video_off_sends_the_video_as_images(spawn, tap_for):
    server = spawn.harness("--source", "demo:video", "--streaming-video", "off")
    _, _, (conn,) = connect(server, tap_for, 1)
    conn.wait_for(lambda k: sum(VIDEO.contains(Rect(*d.box)) for d in k.draws()) >= 10, 30, "10 images of the video's area")
    assert server.stats()["source_state"]["video"] and server.stats()["render"]["streams"]["mode"] == "off"
    assert not {MsgDisplay.STREAM_CREATE, MsgDisplay.STREAM_DATA} & {t for t, _ in conn.snapshot()}


def test_demo_video_source_streams_from_the_start(spawn, tap_for):
    server = spawn.harness("--source", "demo:video")
    _, _, (conn,) = connect(server, tap_for, 1)
    conn.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 5, 30, "the stream")


def test_spice_gtk_plays_a_vp8_stream_shared_by_two_clients(spawn, tap_for):
    """spice-gtk advertises CODEC_VP8 where GStreamer has vp8dec; with `--video-codecs`
    preferring VP8 it gets VP8 frames (one stateful encode per frame for both, counted at
    Vp8Encoder.encode), decodes them through GStreamer, and a late client starts at a key frame.
    24 dB: VP8's 4:2:0 chroma keeps the saturated plasma under 28 dB at any bitrate
    (benchmarks/streams.py); MJPEG's full tier is held to 30 above."""
    from spice_twisted.codecs.video import is_key_frame

    server = spawn.harness("--video-codecs", "gstreamer:vp8;spice:mjpeg")
    taps, clients, conns = connect(server, tap_for, 2)
    if any(DisplayCap.CODEC_VP8 not in c.client_channel_caps for c in conns):
        pytest.fail("spice-gtk did not advertise VP8: install gstreamer1.0-plugins-good (vp8dec)")
    _start_video(server, conns)
    for conn in conns:
        assert [c["codec_type"] for c in _creates(conn)] == [2]  # VP8
    a, b = (_frames(c) for c in conns)
    assert is_key_frame(a[0]) and is_key_frame(b[0])
    plasma = Plasma()
    for c in clients:
        assert wait_until(lambda c=c: (q := _best_psnr(c, server, plasma)) >= 24 and q, 30, "the client's VP8 video at >= 24 dB")
    received = [_frames(c) for c in conns]
    calls = server.command("codec_calls", "codec_calls")["calls"]
    assert len({f for r in received for f in r}) <= calls["vp8"] < sum(len(r) for r in received)
    _, late, (conn,) = connect(server, tap_for, 1)
    conn.wait_for(lambda k: _frames(k), 15, "the late client's first frame")
    assert is_key_frame(_frames(conn)[0])
    assert wait_until(lambda: (q := _best_psnr(late[0], server, plasma)) >= 24 and q, 30, "the late client's VP8 video at >= 24 dB")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The clip ffplay plays (support/ffplay.py), made once for the module's tests."""
    return ffplay.make_clip(tmp_path_factory.mktemp("clip"))


def test_a_video_player_in_xvfb_becomes_a_stream_and_its_area_ends_exact(spawn, tap_for, xvfb_factory, clip):
    """--source x11: ffplay playing a generated clip at 25 frames a second (SDL drawing in
    software, support/ffplay.py) is detected from the X damage and sent as a stream over
    its window; killed, the area converges to the X root window exactly."""
    xvfb = xvfb_factory(size=(1024, 768), solid="#336699")
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    _, clients, (conn,) = connect(server, tap_for, 1)
    player, win = ffplay.play(xvfb, clip, 200, 150)
    conn.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 10, 60, "STREAM_CREATE and 10 frames")
    (create,) = _creates(conn)
    assert create["dest"] == {"top": win.top, "left": win.left, "bottom": win.bottom, "right": win.right}
    area = (slice(win.top, win.bottom), slice(win.left, win.right))

    def close() -> float:  # the client's picture against the X root window read now (slowly changing frames)
        return psnr(clients[0].framebuffer()[area][..., [2, 1, 0]], xvfb.root_image()[area])

    assert wait_until(lambda: (q := close()) >= 25 and q, 30, "the client's video near X's")
    player.terminate()
    player.wait(5)
    conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 30, "STREAM_DESTROY")
    wait_match(xvfb.root_image, clients, "the X root window", timeout=30)


def test_a_window_over_a_playing_video_in_xvfb_is_clipped_out_and_exact_in_spice_gtk(spawn, tap_for, xvfb_factory, clip):
    """xlogo opened over part of ffplay's playing video: the still part is clipped out of
    the stream (STREAM_CLIP, which spice-gtk honours) and reaches the client exact while
    the video plays around it."""
    import numpy as np

    xvfb = xvfb_factory(size=(1024, 768), solid="#336699")
    server = spawn.harness("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    _, clients, (conn,) = connect(server, tap_for, 1)
    _, win = ffplay.play(xvfb, clip, 200, 150)
    conn.wait_for(lambda k: _creates(k) and len(_frames(k)) >= 5, 60, "the stream")
    xvfb.spawn("xlogo", "-geometry", f"160x100+{win.left - 20}+{win.top - 10}")  # over the video's top-left corner
    conn.wait_for(lambda k: MsgDisplay.STREAM_CLIP in [t for t, _ in k.snapshot()], 30, "STREAM_CLIP")
    clip_msg = decode_body(message(ChannelType.DISPLAY, "STREAM_CLIP"), [b for t, b in conn.snapshot() if t == MsgDisplay.STREAM_CLIP][-1])
    assert clip_msg["clip_type"] == 1  # rects
    # xlogo (its border included: 162 x 102 from 20, 10 above-left of the video) over the
    # video: the 8-pixel tiles of the video (from its corner) it covers wholly (what
    # changed is found by tiles, since X damages the whole player window each frame).
    over = (slice(win.top, win.top + 88), slice(win.left, win.left + 136))

    def exact() -> bool:
        return np.array_equal(clients[0].framebuffer()[over][..., [2, 1, 0]], xvfb.root_image()[over])

    wait_until(exact, 30, "the window over the video exact in spice-gtk while the video plays")
    mark = conn.mark()
    conn.wait_for(lambda k: len(_frames(k, mark)) >= 10, 30, "10 more frames")
    assert exact()  # frames after the clip leave it alone
