"""Video streams in the inter-frame codecs with a real spice-gtk client (codecs/video.py).

spice-gtk advertises CODEC_H264 where GStreamer decodes H.264 (h264parse from
gstreamer1.0-plugins-bad, avdec_h264 from gstreamer1.0-libav: scripts/setup.sh). The demo's
video (the plasma) becomes an H.264 stream when `--video-codecs` prefers it: the wire tap
shows its STREAM_CREATE and Annex-B access units, spice-gtk's decoded picture is compared
by PSNR with the frames the server drew, and after the video stops the client is exact.
VP9 the same way; VP8 with spice-gtk: tests/test_streams_clients.py; the codec choice: tests/test_streams.py.
"""

from __future__ import annotations

import pytest
from support.processes import as_rgb, wait_match, wait_until
from support.tapped import connect
from test_streams_clients import _best_psnr, _creates, _frames, _start_video

from spice_twisted.codecs.video import is_key_frame
from spice_twisted.sources.demo_video import VIDEO, Plasma
from spice_twisted.wire.enums import DisplayCap, MsgDisplay


def _inter_frames_after_a_key_frame(frames: list[bytes], codec: str) -> None:
    """A client's frames start at a key frame and are mostly inter frames. A few more key
    frames are right: a client whose pipe fell behind (a loaded machine) waits for one."""
    keys = [is_key_frame(f, codec) for f in frames]
    assert keys[0] and sum(keys) <= 1 + len(frames) // 4, keys


def test_spice_gtk_plays_an_h264_stream_on_the_lan_and_its_low_tier_on_a_slow_link_and_both_end_exact(spawn, tap_for):
    """24 dB on the LAN, as for VP8: 4:2:0 chroma keeps the saturated plasma under 28 dB at
    any bitrate (benchmarks/streams.py); MJPEG's full tier is held to 30. A client on a
    2 Mbit/s link (judged a WAN by the server's own measure) gets the low tier: its own
    encoder's frames, every other one, from a key frame, at 22 dB or more."""
    server = spawn.harness("--video-codecs", "gstreamer:h264;spice:mjpeg")
    slow_tap, slow = tap_for(server)
    slow_tap.shape(rate=250_000, delay=0.05)
    slow.wait_event("mark", timeout=60)
    slow_conn = slow_tap.display()
    wait_until(lambda: any(c["link"]["wan"] for c in server.stats()["clients"]), 30, "the slow client judged WAN")
    _, clients, (conn,) = connect(server, tap_for, 1)
    if DisplayCap.CODEC_H264 not in conn.client_channel_caps:
        pytest.fail("spice-gtk did not advertise H.264: install gstreamer1.0-plugins-bad (h264parse) and gstreamer1.0-libav (avdec_h264)")
    _start_video(server, [conn, slow_conn])
    for c in (conn, slow_conn):
        (create,) = _creates(c)
        assert create["codec_type"] == 3 and (create["stream_width"], create["stream_height"]) == (VIDEO.width, VIDEO.height)
    wait_until(lambda: len(_frames(conn)) >= 30, 30, "30 frames on the LAN")
    frames, low = _frames(conn), _frames(slow_conn)
    assert all(f.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for f in frames + low)  # Annex-B byte stream
    for fs in (frames, low):
        _inter_frames_after_a_key_frame(fs, "h264")
    assert not set(frames) & set(low) and len(low) <= 0.6 * len(frames) + 2  # another encoder's, half the frames
    calls = server.command("codec_calls", "codec_calls")["calls"]
    assert len(set(frames)) <= calls["h264"] and len(set(low)) <= calls["h264_low"] and not calls.get("mjpeg")  # libx264's boundary
    displays = [ch for c in server.stats()["clients"] for ch in c["channels"] if ch["channel"] == "display"]
    assert all(d["streams"]["codecs"] == ["h264"] and d["streams"]["codec_order"] == ["h264", "mjpeg"] for d in displays)
    plasma = Plasma()
    assert wait_until(lambda: (q := _best_psnr(clients[0], server, plasma)) >= 24 and q, 30, "spice-gtk's H.264 video at >= 24 dB")
    assert wait_until(lambda: (q := _best_psnr(slow, server, plasma)) >= 22 and q, 30, "the low tier's H.264 video at >= 22 dB")
    server.command("video off", "video")
    for c in (conn, slow_conn):
        c.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 30, "STREAM_DESTROY")
    server.pause()
    server.command("flush", "flush")
    wait_match(lambda: as_rgb(server.framebuffer()), [*clients, slow], "the server's framebuffer", timeout=60)


def test_spice_gtk_plays_a_vp9_stream_and_ends_exact(spawn, tap_for):
    """VP9 (libvpx-vp9, profile 0) decoded by spice-gtk's GStreamer (vp9dec): codec_type 4
    on the wire, a key frame first, the plasma at 24 dB or more as for VP8 and H.264."""
    server = spawn.harness("--video-codecs", "gstreamer:vp9;spice:mjpeg")
    _, clients, (conn,) = connect(server, tap_for, 1)
    if DisplayCap.CODEC_VP9 not in conn.client_channel_caps:
        pytest.fail("spice-gtk did not advertise VP9: install gstreamer1.0-plugins-good (vp9dec)")
    _start_video(server, [conn])
    (create,) = _creates(conn)
    assert create["codec_type"] == 4
    frames = _frames(conn)
    _inter_frames_after_a_key_frame(frames, "vp9")
    assert len(set(frames)) <= server.command("codec_calls", "codec_calls")["calls"]["vp9"]  # libvpx-vp9's boundary
    plasma = Plasma()
    assert wait_until(lambda: (q := _best_psnr(clients[0], server, plasma)) >= 24 and q, 30, "spice-gtk's VP9 video at >= 24 dB")
    server.command("video off", "video")
    conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 30, "STREAM_DESTROY")
    server.pause()
    server.command("flush", "flush")
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
