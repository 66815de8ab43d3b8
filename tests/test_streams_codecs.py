"""Video streams in the inter-frame codecs with a real spice-gtk client (codecs/video.py).

spice-gtk advertises CODEC_H264 where GStreamer decodes H.264 (h264parse from
gstreamer1.0-plugins-bad, avdec_h264 from gstreamer1.0-libav: scripts/setup.sh). The demo's
video (the plasma) becomes an H.264 stream when `--video-codecs` prefers it: the wire tap
shows its STREAM_CREATE and Annex-B access units, spice-gtk's decoded picture is compared
by PSNR with the frames the server drew, and after the video stops the client is exact.
VP8 with spice-gtk: tests/test_streams_clients.py; VP9 and the codec choice: tests/test_streams.py.
"""

from __future__ import annotations

import pytest
from support.processes import as_rgb, wait_match, wait_until
from support.tapped import connect
from test_streams_clients import _best_psnr, _creates, _frames, _start_video

from spice_twisted.codecs.video import is_key_frame
from spice_twisted.sources.demo_video import VIDEO, Plasma
from spice_twisted.wire.enums import DisplayCap, MsgDisplay


def test_spice_gtk_plays_an_h264_stream_and_ends_exact(spawn, tap_for):
    """24 dB, as for VP8: 4:2:0 chroma keeps the saturated plasma under 28 dB at any
    bitrate (benchmarks/streams.py); MJPEG's full tier is held to 30."""
    server = spawn.harness("--video-codecs", "gstreamer:h264;spice:mjpeg")
    _, clients, (conn,) = connect(server, tap_for, 1)
    if DisplayCap.CODEC_H264 not in conn.client_channel_caps:
        pytest.fail("spice-gtk did not advertise H.264: install gstreamer1.0-plugins-bad (h264parse) and gstreamer1.0-libav (avdec_h264)")
    _start_video(server, [conn])
    (create,) = _creates(conn)
    assert create["codec_type"] == 3 and (create["stream_width"], create["stream_height"]) == (VIDEO.width, VIDEO.height)
    frames = _frames(conn)
    assert all(f.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for f in frames)  # Annex-B byte stream
    assert is_key_frame(frames[0], "h264") and not any(is_key_frame(f, "h264") for f in frames[1:])
    calls = server.command("codec_calls", "codec_calls")["calls"]
    assert len(set(frames)) <= calls["h264"] and not calls.get("mjpeg")  # encoded at libx264's boundary
    (display,) = [ch for c in server.stats()["clients"] for ch in c["channels"] if ch["channel"] == "display"]
    assert display["streams"]["codecs"] == ["h264"] and display["streams"]["codec_order"] == ["h264", "mjpeg"]
    plasma = Plasma()
    assert wait_until(lambda: (q := _best_psnr(clients[0], server, plasma)) >= 24 and q, 30, "spice-gtk's H.264 video at >= 24 dB")
    server.command("video off", "video")
    conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 30, "STREAM_DESTROY")
    server.pause()
    server.command("flush", "flush")
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
