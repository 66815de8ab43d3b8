"""Video streams in-process (render/streams.py, channels/display_streams.py): what becomes a
stream and what does not, one encode per tier for every client, the end of a stream and the
lossless picture after it, a client joining mid-stream, a replaced surface.

Real server objects on a fake clock; each reader decodes what it was sent independently
(tests/support/display_decode.py: MJPEG frames and JPEG images with Pillow). Encodes are
counted at the codec boundary (codecs.ENCODERS).
"""

from __future__ import annotations

import numpy as np
import pytest
from support.images import photo, psnr, text_ui
from support.inprocess import Reader, make_server, noise, open_display

from spice_twisted import codecs
from spice_twisted.client_signatures import HTML5_COMMON_CAPS, HTML5_MAIN_CAPS
from spice_twisted.render import streams
from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import DisplayCap, MsgDisplay

PLAYS = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG}  # what spice-gtk and spice-html5 advertise
VIDEO = Rect(20, 5, 180, 95)  # 160x90: above streams.MIN_AREA on the 200x100 canvas
STEP = 0.05  # 20 updates a second


def _counting(monkeypatch) -> dict[str, int]:
    calls: dict[str, int] = {}
    for name, fn in list(codecs.ENCODERS.items()):

        def counted(px, _fn=fn, _name=name):
            calls[_name] = calls.get(_name, 0) + 1
            return _fn(px)

        monkeypatch.setitem(codecs.ENCODERS, name, counted)
    return calls


def _play(srv, readers, frames: int, rect: Rect = VIDEO, first: int = 0, content=photo) -> None:
    """`frames` new pictures in `rect`, one every STEP seconds, every reader reading along."""
    for i in range(first, first + frames):
        srv.render.primary.pixels[rect.top : rect.bottom, rect.left : rect.right] = content(rect.height, rect.width, i)
        srv.render.damage(rect)
        srv.render.flush()
        for r in readers:
            r.catch_up(srv)
        srv.reactor.advance(STEP)


def _types(r: Reader, start: int = 0) -> list[int]:
    return [t for t, _ in r.messages[start:]]


def _area(px: np.ndarray, rect: Rect = VIDEO) -> np.ndarray:
    return px[rect.top : rect.bottom, rect.left : rect.right]


def _server_and_readers(n: int, caps=PLAYS):
    srv = make_server()
    noise(srv)
    readers = [Reader(*open_display(srv, caps)) for _ in range(n)]
    for r in readers:
        r.catch_up(srv)
    return srv, readers


def test_a_steady_photo_area_becomes_one_stream_encoded_once_for_every_client_and_ends_exact(monkeypatch):
    srv, readers = _server_and_readers(2)
    plain = Reader(*open_display(srv, set()))  # advertises no MJPEG: plays no streams
    plain.catch_up(srv)
    everyone = [*readers, plain]
    calls = _counting(monkeypatch)
    marks = [len(r.messages) for r in everyone]
    _play(srv, everyone, streams.DETECT_UPDATES - 1)
    assert not any(MsgDisplay.STREAM_CREATE in _types(r) for r in everyone)  # not steady yet: images
    _play(srv, everyone, 8, first=streams.DETECT_UPDATES - 1)
    for r, m in zip(readers, marks[:2], strict=True):
        types = _types(r, m)
        assert types.count(MsgDisplay.STREAM_CREATE) == 1
        after = types[types.index(MsgDisplay.STREAM_CREATE) :]
        assert after.count(MsgDisplay.STREAM_DATA) == 8 and MsgDisplay.DRAW_COPY not in after  # frames, no images
        assert r.screen.stream_frames == 8
        assert psnr(_area(r.screen.fb), _area(srv.render.primary.pixels)) >= 30
    assert MsgDisplay.STREAM_CREATE not in _types(plain) and plain.screen.stream_frames == 0
    assert np.array_equal(plain.screen.fb[..., :3], srv.render.primary.pixels[..., :3])  # images, exact
    assert calls["mjpeg"] == 8  # one encode a frame, not one a client
    assert srv.render.streams.counters.started == 1 and len(srv.render.streams.active) == 1
    # The updates stop: STREAM_DESTROY, then the area lossless; every client exact.
    srv.reactor.advance(streams.END_AFTER)
    for r in readers:
        r.catch_up(srv)
        assert MsgDisplay.STREAM_DESTROY in _types(r) and not r.screen.streams
    srv.reactor.advance(srv.render.lossless_after + STEP)
    for r in everyone:
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
        assert not r.cc.lossy


def test_small_or_synthetic_areas_redrawn_as_fast_stay_images():
    srv, readers = _server_and_readers(1)
    small = Rect(10, 10, 74, 74)  # 64x64 photo: under MIN_AREA
    _play(srv, readers, 12, small)
    _play(srv, readers, 12, VIDEO, content=text_ui)  # large, steady, but text: lossless pays
    assert MsgDisplay.STREAM_CREATE not in _types(readers[0])
    assert np.array_equal(readers[0].screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_slower_area_stays_images():
    srv, readers = _server_and_readers(1)
    for i in range(12):  # 5 updates a second
        _play(srv, readers, 1, first=i)
        srv.reactor.advance(0.2 - STEP)
    assert MsgDisplay.STREAM_CREATE not in _types(readers[0])


def test_a_client_joining_mid_stream_gets_it_at_once():
    srv, readers = _server_and_readers(1)
    _play(srv, readers, 6)
    late = Reader(*open_display(srv, PLAYS))
    late.catch_up(srv)
    types = _types(late)
    mark = types.index(MsgDisplay.MARK)
    assert types[mark + 1 : mark + 3] == [MsgDisplay.STREAM_CREATE, MsgDisplay.STREAM_DATA]  # the newest frame
    _play(srv, [*readers, late], 2, first=6)
    assert late.screen.stream_frames == 3
    assert psnr(_area(late.screen.fb), _area(srv.render.primary.pixels)) >= 30


def test_the_video_moved_ends_its_stream_and_starts_one_where_it_is():
    srv, readers = _server_and_readers(1)
    _play(srv, readers, 6)
    moved = VIDEO.translate(10, 0)
    _play(srv, readers, 6, moved, first=6)
    types = _types(readers[0])
    assert types.count(MsgDisplay.STREAM_CREATE) == 2 and types.count(MsgDisplay.STREAM_DESTROY) == 1
    assert types.index(MsgDisplay.STREAM_DESTROY) < len(types) - 1 - types[::-1].index(MsgDisplay.STREAM_CREATE)
    (live,) = readers[0].screen.streams.values()
    assert live["dest"] == moved.wire()
    srv.reactor.advance(streams.END_AFTER + srv.render.lossless_after + STEP)
    readers[0].catch_up(srv)
    assert np.array_equal(readers[0].screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_wan_client_gets_the_low_tier_at_half_the_rate_from_its_own_shared_encode(monkeypatch):
    srv, readers = _server_and_readers(3)
    readers[2].cc.client.link.is_wan = True  # the link estimate's verdict (tests/test_lossy_clients.py measures it)
    calls = _counting(monkeypatch)
    _play(srv, readers, 4 + 8)
    full = [r.screen.stream_frames for r in readers[:2]]
    assert full == [9, 9]  # the frame that started it and 8 more
    assert readers[2].screen.stream_frames == 5  # every other one
    assert calls["mjpeg"] == 9 and calls["mjpeg_low"] == 5
    assert psnr(_area(readers[2].screen.fb), _area(srv.render.primary.pixels)) >= 28


def test_a_wan_too_slow_for_the_low_tier_gets_the_least_at_a_quarter_of_the_rate_and_comes_back(monkeypatch):
    """Two WAN clients whose link estimate is under the low tier's bit rate share the least
    tier (a quarter of the frames, one encode each for both); a WAN client with room keeps
    the low tier, a LAN one the full. Their links get faster: back on the low tier."""
    from spice_twisted.codecs.video import MJPEG_MIN

    srv, readers = _server_and_readers(4)
    lan, wan, slow = readers[0], readers[1], readers[2:]
    wan.cc.client.link.is_wan, wan.cc.client.link.bandwidth = True, 50e6
    for r in slow:  # the link estimate's verdict and bandwidth (tests/test_lossy_clients.py measures them)
        r.cc.client.link.is_wan, r.cc.client.link.bandwidth = True, 100e3
    calls = _counting(monkeypatch)
    _play(srv, readers, 4 + 16)
    assert lan.screen.stream_frames == 17 and wan.screen.stream_frames == 9
    got = [r.screen.stream_frames for r in slow]
    assert got[0] == got[1] and 4 <= got[0] <= 6, got  # the first frame low, then one in four
    assert 3 <= calls.get(MJPEG_MIN, 0) <= got[0]  # one encode for both
    assert _frame_data(slow[0]) == _frame_data(slow[1])  # the very same frame bytes
    assert all(r.cc.streams.least for r in slow) and not wan.cc.streams.least
    assert psnr(_area(slow[0].screen.fb), _area(srv.render.primary.pixels)) >= 26
    for r in slow:
        r.cc.client.link.bandwidth = 50e6
    before = calls.get(MJPEG_MIN, 0)
    _play(srv, readers, 8, first=20)
    assert calls.get(MJPEG_MIN, 0) == before and not any(r.cc.streams.least for r in slow)
    assert all(r.screen.stream_frames >= got[0] + 4 for r in slow)  # every other frame again


def test_a_new_surface_ends_the_streams_before_it_is_destroyed():
    srv, readers = _server_and_readers(1)
    _play(srv, readers, 6)
    srv.render.resize(160, 120)
    srv.render.flush()
    readers[0].catch_up(srv)
    types = _types(readers[0])
    assert types.index(MsgDisplay.STREAM_DESTROY) < types.index(MsgDisplay.SURFACE_DESTROY)
    assert not srv.render.streams.active and not readers[0].screen.streams


def test_a_client_that_leaves_mid_stream_lets_its_frames_go():
    srv, readers = _server_and_readers(2)
    _play(srv, readers, 6)
    gone = readers[1]
    gone.cc.pauseProducing()  # its socket full: what comes now stays in its pipe
    srv.render.primary.pixels[VIDEO.top : VIDEO.bottom, VIDEO.left : VIDEO.right] = photo(VIDEO.height, VIDEO.width, 99)
    srv.render.damage(VIDEO)
    srv.render.flush()
    assert any(type(it).__name__ == "StreamFrameItem" for it in gone.cc.pipe)  # a frame queued for it
    gone.cc.connectionLost(None)
    readers[0].catch_up(srv)
    srv.reactor.advance(streams.END_AFTER + STEP)
    readers[0].catch_up(srv)
    srv.render.request_frame()
    srv.render.flush()  # the next frame lets the upgrade's snapshot go too
    assert len(srv.render.payloads) == 0  # no frame (nor its payload) held by anyone


def test_streaming_video_all_streams_any_steady_area_and_off_ends_them():
    srv, readers = _server_and_readers(1)
    srv.render.streams.set_mode("all")
    _play(srv, readers, 6, content=text_ui)  # steady, though not photo-like
    assert _types(readers[0]).count(MsgDisplay.STREAM_CREATE) == 1
    srv.render.streams.set_mode("off")
    readers[0].catch_up(srv)
    assert MsgDisplay.STREAM_DESTROY in _types(readers[0]) and not readers[0].screen.streams
    mark = len(readers[0].messages)
    _play(srv, readers, 6, content=text_ui, first=6)
    assert not {MsgDisplay.STREAM_CREATE, MsgDisplay.STREAM_DATA} & set(_types(readers[0], mark))
    assert np.array_equal(readers[0].screen.fb[..., :3], srv.render.primary.pixels[..., :3])


VP8_CAPS = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_VP8}
CODEC_CAP = {"vp8": DisplayCap.CODEC_VP8, "vp9": DisplayCap.CODEC_VP9, "h264": DisplayCap.CODEC_H264}
WIRE_TYPE = {"mjpeg": 1, "vp8": 2, "h264": 3, "vp9": 4}  # spice-protocol's VideoCodecType


def _frame_data(r: Reader, start: int = 0) -> list[bytes]:
    from spice_twisted.wire.enums import ChannelType
    from spice_twisted.wire.messages import decode_body, message

    data = message(ChannelType.DISPLAY, "STREAM_DATA")
    return [decode_body(data, b)["data"] for t, b in r.messages[start:] if t == MsgDisplay.STREAM_DATA]


def _codec_types(r: Reader) -> list[int]:
    from spice_twisted.wire.enums import ChannelType
    from spice_twisted.wire.messages import decode_body, message

    create = message(ChannelType.DISPLAY, "STREAM_CREATE")
    return [decode_body(create, b)["codec_type"] for t, b in r.messages if t == MsgDisplay.STREAM_CREATE]


def _counting_stateful(monkeypatch) -> dict[str, int]:
    """Stateful encodes, counted at the encoder's boundary (StatefulEncoder.encode)."""
    from spice_twisted.codecs import video

    calls: dict[str, int] = {}
    real = video.StatefulEncoder.encode

    def counted(self, pixels, key):
        calls[self.tier] = calls.get(self.tier, 0) + 1  # "vp8", "vp8_low", ...
        return real(self, pixels, key)

    monkeypatch.setattr(video.StatefulEncoder, "encode", counted)
    return calls


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264"])
def test_stateful_codec_clients_share_one_encode_and_a_late_one_starts_at_a_key_frame(monkeypatch, codec):
    """VP8, VP9, H.264: one encoder per stream, one encode per frame for every client on it,
    each decoded by FFmpeg's own decoder; a client that joins starts at a key frame, made
    for it and shared with the others."""
    from spice_twisted.codecs.video import is_key_frame

    calls = _counting_stateful(monkeypatch)
    caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, CODEC_CAP[codec]}
    srv = make_server()
    srv.display_settings.video_codecs = (codec, "mjpeg")
    noise(srv)
    clients = [Reader(*open_display(srv, caps)) for _ in range(2)]
    mjpeg = Reader(*open_display(srv, PLAYS))  # not this codec: the next on the list
    for r in (*clients, mjpeg):
        r.catch_up(srv)
    _play(srv, [*clients, mjpeg], 8)
    assert [_codec_types(r) for r in (*clients, mjpeg)] == [[WIRE_TYPE[codec]], [WIRE_TYPE[codec]], [1]]
    a, b = (_frame_data(r) for r in clients)
    assert a == b and len(a) == 5 == calls[codec]  # the same bytes to both: one encode per frame
    assert is_key_frame(a[0], codec) and not any(is_key_frame(f, codec) for f in a[1:])
    late = Reader(*open_display(srv, caps))
    late.catch_up(srv)
    assert MsgDisplay.STREAM_CREATE in _types(late)
    _play(srv, [*clients, mjpeg, late], 3, first=8)
    mine = _frame_data(late)
    assert len(mine) == 3 and is_key_frame(mine[0], codec)  # asked for when it joined
    assert _frame_data(clients[0])[-3:] == mine and calls[codec] == 8  # and shared: the others got the same key frame
    for r in (*clients, late):  # decoded (FFmpeg's decoders), near the source
        assert psnr(_area(r.screen.fb), _area(srv.render.primary.pixels)) >= 28


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264"])
def test_wan_clients_share_the_stateful_codecs_low_tier_and_move_between_tiers_at_key_frames(monkeypatch, codec):
    """A stateful codec has a low tier of its own: a second encoder of the stream at half the
    frames and under a third of the bitrate, shared by the WAN clients; a client whose link
    is judged a LAN again gets the full tier from its next key frame, made for it and shared."""
    from spice_twisted.codecs.video import STATEFUL_LOW, is_key_frame

    calls = _counting_stateful(monkeypatch)
    caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, CODEC_CAP[codec]}
    srv = make_server()
    srv.display_settings.video_codecs = (codec, "mjpeg")
    noise(srv)
    lan, wan, wan2 = everyone = [Reader(*open_display(srv, caps)) for _ in range(3)]
    for r in (wan, wan2):
        r.cc.client.link.is_wan = True  # the link estimate's verdict (tests/test_lossy_clients.py measures it)
    for r in everyone:
        r.catch_up(srv)
    _play(srv, everyone, 16)
    full, low, low2 = (_frame_data(r) for r in everyone)
    assert [_codec_types(r) for r in everyone] == [[WIRE_TYPE[codec]]] * 3  # one codec on the wire
    assert low == low2 and len(low) == (len(full) + 1) // 2  # every other frame, the same bytes to both
    assert calls[codec] == len(full) and calls[STATEFUL_LOW[codec]] == len(low)  # one encoder a tier
    assert is_key_frame(full[0], codec) and is_key_frame(low[0], codec)
    assert not any(is_key_frame(f, codec) for f in (*full[1:], *low[1:]))
    assert sum(map(len, low)) < 0.6 * sum(map(len, full)), (sum(map(len, low)), sum(map(len, full)))
    assert psnr(_area(wan.screen.fb), _area(srv.render.primary.pixels)) >= 26  # decoded by FFmpeg
    wan2.cc.client.link.is_wan = False
    mark = len(wan2.messages)
    _play(srv, everyone, 4, first=16)
    moved = _frame_data(wan2, mark)
    assert moved and is_key_frame(moved[0], codec)  # the full tier, from a key frame
    assert moved == _frame_data(lan)[-len(moved) :]  # the full tier's frames, shared with the LAN client
    assert psnr(_area(wan2.screen.fb), _area(srv.render.primary.pixels)) >= 28


def _prefer(r: Reader, srv, wire_types: list[int]) -> None:
    """The client's PREFERRED_VIDEO_CODEC_TYPE: its codecs, best first."""
    import struct

    from spice_twisted.wire.enums import MsgcDisplay

    body = bytes([len(wire_types), *wire_types])
    r.cc.dataReceived(struct.pack("<HI", MsgcDisplay.PREFERRED_VIDEO_CODEC_TYPE, len(body)) + body)
    r.catch_up(srv)


def test_a_clients_preferred_video_codecs_rank_the_servers_and_bad_lists_close_only_it():
    """The server allows MJPEG, VP8, H.264 in that order; each client gets the first it
    decodes in its own order when it sent one (unknown numbers, codecs the server does not
    allow and repeats ignored), else in the server's. H.264 needs an even-sized stream:
    an odd one goes in the next codec. A truncated list closes that client only."""
    srv = make_server()
    srv.display_settings.video_codecs = ("mjpeg", "vp8", "h264")
    noise(srv)
    all_caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_VP8, DisplayCap.CODEC_VP9, DisplayCap.CODEC_H264}
    plain, h264, vp8, no_h264, bad = (Reader(*open_display(srv, all_caps if i != 3 else VP8_CAPS)) for i in range(5))
    readers = [plain, h264, vp8, no_h264]
    _prefer(h264, srv, [3, 3, 2])
    _prefer(vp8, srv, [99, 4, 2, 0, 3])  # 99, 0: unknown; VP9: not allowed
    _prefer(no_h264, srv, [3, 2])  # it prefers H.264 but does not advertise it
    assert [r.cc.streams.codec_order() for r in readers] == [
        ["mjpeg", "vp8", "h264"],
        ["h264", "vp8", "mjpeg"],
        ["vp8", "h264", "mjpeg"],
        ["vp8", "mjpeg"],
    ]
    bad.cc.dataReceived(struct_pack_preferred(255, [3, 2]))  # says 255 codecs, holds 2
    assert not bad.cc.connected and all(r.cc.connected for r in readers)
    for r in readers:
        r.catch_up(srv)
    _play(srv, readers, 6)
    assert [_codec_types(r) for r in readers] == [[1], [3], [2], [2]]
    srv.reactor.advance(streams.END_AFTER * 2)  # the stream ends
    odd = Rect(21, 5, 180, 95)  # 159 wide: no H.264; the client's next choice
    _play(srv, readers, 8, rect=odd, first=6)
    assert all(_types(r).count(MsgDisplay.STREAM_CREATE) == 2 for r in readers)
    assert [_codec_types(r)[-1] for r in readers] == [1, 2, 2, 2]
    for r in readers:
        assert psnr(_area(r.screen.fb, odd), _area(srv.render.primary.pixels, odd)) >= 28


def struct_pack_preferred(count: int, wire_types: list[int]) -> bytes:
    import struct

    from spice_twisted.wire.enums import MsgcDisplay

    body = bytes([count, *wire_types])
    return struct.pack("<HI", MsgcDisplay.PREFERRED_VIDEO_CODEC_TYPE, len(body)) + body


def _report(r: Reader, srv, frames: int, drops: int, delay: int = 10) -> None:
    """The client's STREAM_REPORT for the stream it was asked to report on."""
    import struct

    from spice_twisted.wire.enums import ChannelType, MsgcDisplay
    from spice_twisted.wire.messages import decode_body, message

    activate = message(ChannelType.DISPLAY, "STREAM_ACTIVATE_REPORT")
    (req,) = [decode_body(activate, b) for t, b in r.messages if t == MsgDisplay.STREAM_ACTIVATE_REPORT][-1:]
    body = struct.pack("<6IiI", req["stream_id"], req["unique_id"], 0, 0, frames, drops, delay, 0xFFFFFFFF)
    r.cc.dataReceived(struct.pack("<HI", MsgcDisplay.STREAM_REPORT, len(body)) + body)
    r.catch_up(srv)


def test_stream_reports_move_a_late_client_to_the_low_tier_and_one_that_cannot_decode_to_images(monkeypatch):
    caps = {*PLAYS, DisplayCap.STREAM_REPORT}
    srv, readers = _server_and_readers(3, caps)
    _play(srv, readers, 6)
    for r in readers:
        types = _types(r)
        assert types[types.index(MsgDisplay.STREAM_CREATE) + 1] == MsgDisplay.STREAM_ACTIVATE_REPORT
    calls = _counting(monkeypatch)
    _report(readers[1], srv, 20, 5, -80)  # a quarter of its frames dropped, the last one late
    _report(readers[2], srv, 0, 0xFFFFFFFF)  # it cannot decode MJPEG
    assert MsgDisplay.STREAM_DESTROY in _types(readers[2])
    marks = [len(r.messages) for r in readers]
    _play(srv, readers, 6, first=6)
    assert calls["mjpeg"] == 6 and calls["mjpeg_low"] == 3  # the late one: every other frame
    assert [_types(r, m).count(MsgDisplay.STREAM_DATA) for r, m in zip(readers, marks, strict=True)] == [6, 3, 0]
    assert _types(readers[2], marks[2]).count(MsgDisplay.DRAW_COPY) >= 6  # images instead, exact
    assert np.array_equal(_area(readers[2].screen.fb)[..., :3], _area(srv.render.primary.pixels)[..., :3])
    assert MsgDisplay.STREAM_CREATE not in _types(readers[2], marks[2])


def test_a_client_that_cannot_decode_vp8_gets_the_stream_again_as_mjpeg():
    from spice_twisted.wire.enums import ChannelType
    from spice_twisted.wire.messages import decode_body, message

    srv = make_server()
    srv.display_settings.video_codecs = ("vp8", "mjpeg")
    noise(srv)
    r = Reader(*open_display(srv, {*VP8_CAPS, DisplayCap.STREAM_REPORT}))
    r.catch_up(srv)
    _play(srv, [r], 6)
    _report(r, srv, 0, 0xFFFFFFFF)
    mark = len(r.messages)
    _play(srv, [r], 3, first=6)
    create = message(ChannelType.DISPLAY, "STREAM_CREATE")
    assert [decode_body(create, b)["codec_type"] for t, b in r.messages if t == MsgDisplay.STREAM_CREATE] == [2, 1]
    assert _types(r, mark).count(MsgDisplay.STREAM_DATA) == 3 and r.screen.stream_frames >= 3
    assert psnr(_area(r.screen.fb), _area(srv.render.primary.pixels)) >= 30


def _drag_a_window_over_the_video(srv, readers) -> Rect:
    """A window of text below-left of the video, moved (COPY_BITS) onto its left part after
    6 frames, then 12 more frames drawn around it; returns where the window is now."""
    from spice_twisted.render.region import Region

    window = Rect(0, 60, 90, 100)  # below-left of the video, then dragged over its corner
    srv.render.primary.pixels[window.top : window.bottom, window.left : window.right] = text_ui(window.height, window.width)
    srv.render.damage(window)
    srv.render.flush()
    _play(srv, readers, 6)
    srv.render.copy_bits(window, 10, 40)  # now over the video's left part (20..100, 40..80)
    moved = Rect(10, 40, 100, 80)
    srv.render.flush()
    for i in range(6, 18):  # the video draws around the window
        for r in Region(VIDEO).subtract(moved).rects():
            srv.render.primary.pixels[r.top : r.bottom, r.left : r.right] = photo(VIDEO.height, VIDEO.width, i)[
                r.top - VIDEO.top : r.bottom - VIDEO.top, r.left - VIDEO.left : r.right - VIDEO.left
            ]
            srv.render.damage(r)
        srv.render.flush()
        for rd in readers:
            rd.catch_up(srv)
        srv.reactor.advance(STEP)
    return moved


def test_a_window_dragged_over_a_playing_stream_shows_and_every_client_ends_exact():
    """A window moved (COPY_BITS) onto the video while it plays: the video keeps drawing
    only what the window leaves visible, the frames carry the window as the surface holds
    it, and after the video stops every client is exact, the window's text included."""

    srv, readers = _server_and_readers(2)
    moved = _drag_a_window_over_the_video(srv, readers)
    assert all(len(rd.screen.streams) == 1 for rd in readers)  # still one stream
    for rd in readers:
        assert psnr(_area(rd.screen.fb), _area(srv.render.primary.pixels)) >= 30
        # The window stayed still over the video: clipped out of the stream, sent exact.
        assert MsgDisplay.STREAM_CLIP in _types(rd)
        (live,) = rd.screen.streams.values()
        assert live["clip_type"] == 1 and not any(
            Rect(c["left"], c["top"], c["right"], c["bottom"]).intersect(moved) != Rect(0, 0, 0, 0) for c in live["clip_rects"]
        )
        over = moved.intersect(VIDEO)
        assert np.array_equal(_area(rd.screen.fb, over)[..., :3], _area(srv.render.primary.pixels, over)[..., :3])
    srv.reactor.advance(streams.END_AFTER + srv.render.lossless_after + STEP)
    for rd in readers:
        rd.catch_up(srv)
        assert not rd.screen.streams
        assert np.array_equal(rd.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_spice_html5_gets_a_clipped_stream_as_images_and_a_spice_gtk_beside_it_keeps_it():
    """spice-html5 keeps STREAM_CLIP but draws whole frames (tests/test_streams_html5.py
    shows it in Chromium). A client that links as spice-html5 does gets STREAM_DESTROY once
    the stream is clipped and the video's pictures as images from then on, the window
    exact among them; a spice-gtk beside it plays the clipped stream."""
    srv = make_server()
    noise(srv)
    gtk = Reader(*open_display(srv, PLAYS))
    html5 = Reader(*open_display(srv, PLAYS, main_link=(HTML5_MAIN_CAPS, HTML5_COMMON_CAPS)))
    for rd in (gtk, html5):
        rd.catch_up(srv)
    moved = _drag_a_window_over_the_video(srv, [gtk, html5])
    assert MsgDisplay.STREAM_CLIP in _types(gtk) and MsgDisplay.STREAM_DESTROY not in _types(gtk) and len(gtk.screen.streams) == 1
    types = _types(html5)
    assert MsgDisplay.STREAM_CLIP not in types and types.count(MsgDisplay.STREAM_DESTROY) == 1 and not html5.screen.streams
    after = types[types.index(MsgDisplay.STREAM_DESTROY) :]
    assert MsgDisplay.STREAM_DATA not in after and MsgDisplay.STREAM_CREATE not in after  # images only, for the stream's life
    assert after.count(MsgDisplay.DRAW_COPY) >= 6
    over = moved.intersect(VIDEO)
    for rd in (gtk, html5):
        assert np.array_equal(_area(rd.screen.fb, over)[..., :3], _area(srv.render.primary.pixels, over)[..., :3])
        assert psnr(_area(rd.screen.fb), _area(srv.render.primary.pixels)) >= 30
    srv.reactor.advance(streams.END_AFTER + srv.render.lossless_after + STEP)
    for rd in (gtk, html5):
        rd.catch_up(srv)
        assert np.array_equal(rd.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    assert not html5.cc.streams.clipped_out  # forgotten with the stream


def test_a_frame_shown_after_the_images_sent_behind_it_is_made_exact_when_the_stream_ends():
    """A client shows a frame at its multimedia time, stamped ahead, inside the clip as it is
    then, while images draw as they come: a frame sent before an image of the clipped-out
    part, shown after a STREAM_CLIP that takes the part back in, covers that image. The
    server cannot know what the client drew last there: at the end of a stream its whole
    rect is lossy again on every client that played it, and the upgrade makes it exact."""
    from support.images import text_ui

    srv, readers = _server_and_readers(2)
    for rd in readers:
        rd.screen.play_ahead = True
    left = Rect(VIDEO.left, VIDEO.top, VIDEO.left + VIDEO.width // 2, VIDEO.bottom)

    def step(rect: Rect, i: int, content=photo) -> None:
        srv.render.primary.pixels[rect.top : rect.bottom, rect.left : rect.right] = content(rect.height, rect.width, i)
        srv.render.damage(rect)
        srv.render.flush()
        for rd in readers:
            rd.catch_up(srv)
            rd.screen.play()
        srv.reactor.advance(STEP)

    for i in range(streams.DETECT_UPDATES):
        step(VIDEO, i)
    for i in range(streams.CLIP_FRAMES + 2):  # only the left half moves: the right is clipped out
        step(left, 100 + i)
    assert all(live["clip_type"] == 1 for rd in readers for live in rd.screen.streams.values())
    # One last update of the whole rect: the frame, a STREAM_CLIP of the whole rect, the right
    # half as an image (it was outside the clip); the frame is shown after all three.
    srv.render.primary.pixels[left.top : left.bottom, left.left : left.right] = photo(left.height, left.width, 200)
    right = Rect(left.right, VIDEO.top, VIDEO.right, VIDEO.bottom)
    srv.render.primary.pixels[right.top : right.bottom, right.left : right.right] = text_ui(right.height, right.width)
    srv.render.damage(VIDEO)
    srv.render.flush()
    for rd in readers:
        rd.catch_up(srv)
        assert sorted(_types(rd)[-3:]) == sorted([MsgDisplay.STREAM_DATA, MsgDisplay.STREAM_CLIP, MsgDisplay.DRAW_COPY])
        rd.screen.play()
    srv.reactor.advance(streams.END_AFTER + srv.render.lossless_after + STEP)
    for rd in readers:
        rd.catch_up(srv)
        assert not rd.screen.streams
        assert np.array_equal(rd.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_a_client_that_stops_reading_holds_few_frames_and_recovers_at_a_key_frame():
    """Bounded per client: an MJPEG pipe holds only the newest unsent frame, a VP8 pipe at
    most MAX_QUEUED_STATEFUL (then it skips to a key frame); reading again, each decodes
    the video right (the VP8 decoder would show garbage after a skipped inter frame)."""
    from spice_twisted.channels.display_streams import MAX_QUEUED_STATEFUL, StreamFrameItem

    srv = make_server()
    srv.display_settings.video_codecs = ("vp8", "mjpeg")
    noise(srv)
    vp8 = Reader(*open_display(srv, VP8_CAPS))
    mjpeg = Reader(*open_display(srv, PLAYS))
    for r in (vp8, mjpeg):
        r.catch_up(srv)
    _play(srv, [vp8, mjpeg], 6)
    for r in (vp8, mjpeg):
        r.cc.pauseProducing()  # its socket is full: nothing more is written
    for i in range(6, 30):
        srv.render.primary.pixels[VIDEO.top : VIDEO.bottom, VIDEO.left : VIDEO.right] = photo(VIDEO.height, VIDEO.width, i)
        srv.render.damage(VIDEO)
        srv.render.flush()
        srv.reactor.advance(STEP)
        frames = [sum(isinstance(it, StreamFrameItem) for it in r.cc.pipe) for r in (vp8, mjpeg)]
        assert frames[0] <= MAX_QUEUED_STATEFUL and frames[1] <= 1, frames
    for r in (vp8, mjpeg):
        r.cc.resumeProducing()
        r.catch_up(srv)
    _play(srv, [vp8, mjpeg], 3, first=30)
    for r in (vp8, mjpeg):
        assert psnr(_area(r.screen.fb), _area(srv.render.primary.pixels)) >= 28


def _stamps(r: Reader, start: int = 0) -> list[int]:
    """The multimedia time of each STREAM_DATA from message `start` on."""
    import struct

    return [struct.unpack_from("<I", b, 4)[0] for t, b in r.messages[start:] if t == MsgDisplay.STREAM_DATA]


def test_frames_are_stamped_ahead_by_each_clients_round_trip_then_by_its_reports():
    """The play-ahead is per client: the link's round trip plus a margin before any report
    (100 ms while none is measured), then what the reports say frames need: one whose
    frames come 200 ms early is stamped closer to the clock, a late one further ahead."""
    from spice_twisted.channels import display_streams as ds

    caps = {*PLAYS, DisplayCap.STREAM_REPORT}
    srv, readers = _server_and_readers(3, caps)
    srv.mm_time = lambda: 5000  # the clock the main channel's INIT gives the client
    for r in readers[1:]:
        r.cc.client.link.rtt_sample(0.080)
    _play(srv, readers, 6)
    first = 5000 + 80 + ds.AHEAD_MARGIN_MS
    assert [set(_stamps(r)) for r in readers] == [{5000 + ds.AHEAD_DEFAULT_MS}, {first}, {first}]
    _report(readers[1], srv, 20, 0, 200)  # its frames came 200 ms before their time
    _report(readers[2], srv, 20, 0, -40)  # 40 ms late
    marks = [len(r.messages) for r in readers]
    _play(srv, readers, 4, first=6)
    got = [set(_stamps(r, m)) for r, m in zip(readers, marks, strict=True)]
    assert got[0] == {5000 + ds.AHEAD_DEFAULT_MS}
    assert got[1] == {first - (200 - ds.AHEAD_MARGIN_MS) // 2}  # down by half the excess
    assert got[2] == {first + ds.AHEAD_MARGIN_MS + 40}  # up at once, to come a margin early


def test_a_display_socket_holds_few_unsent_bytes_and_a_wan_clients_bound_follows_its_link():
    """channels/link.py's TCP_NOTSENT_LOWAT on a real TCP socket whose peer reads nothing:
    the kernel takes only about the bound (without it, megabytes), the bound is the link's
    bandwidth-delay product once the client is judged WAN, and a closed socket's listener
    lets go of itself."""
    import fcntl
    import socket
    import struct

    from spice_twisted.channels import link as chlink
    from spice_twisted.link_estimate import LinkEstimate

    siocoutqnsd = 0x894B  # linux/sockios.h: bytes in the send queue not yet sent

    def unsent_after_flood(sock: socket.socket) -> int:
        sock.setblocking(False)
        try:
            while True:
                sock.send(b"x" * 65536)
        except BlockingIOError:
            pass
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), siocoutqnsd, b"\0" * 4))[0]

    def pair() -> tuple[socket.socket, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            peer = socket.socket()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's small window
            peer.connect(listener.getsockname())
            return listener.accept()[0], peer

    plain, plain_peer = pair()
    bounded, bounded_peer = pair()
    est = LinkEstimate()
    chlink.follow_link(bounded, est)
    lowat = lambda: bounded.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)  # noqa: E731
    assert lowat() == chlink.DISPLAY_NOTSENT_LOWAT  # LAN, or not measured yet
    est.probe_result(0.080, 2e6)  # 2 Mbit/s, 80 ms: WAN
    assert est.is_wan and lowat() == 20_000  # 250 kB/s x 80 ms
    assert unsent_after_flood(plain) > 1 << 20  # the kernel's default: megabytes
    assert unsent_after_flood(bounded) <= 20_000 + 65536  # the bound and at most one more segment
    est.probe_result(0.001, 100e6)
    assert not est.is_wan and lowat() == chlink.DISPLAY_NOTSENT_LOWAT
    bounded.close()
    est.probe_result(0.080, 2e6)  # a change after the close: the listener goes
    assert not est._listeners
    for s in (plain, plain_peer, bounded_peer):
        s.close()
