"""Video streams to spice-gtk over a shaped link (tests/support/shaper.py: 80 ms round trip,
8 Mbit/s, token bucket) beside a client on the LAN.

Counted on the wire (each client's own wire tap, between the client and its link): the
tier of every frame (its JPEG's chroma sampling), how many frames and bytes each client
gets, and the STREAM_REPORTs spice-gtk sends back (how early frames came against the
clock the main channel's INIT set). The decoded pictures are compared with the plasma
frames the server drew (PSNR), and after the video stops with the server's framebuffer.
"""

from __future__ import annotations

import struct
import time

from support.processes import as_rgb, wait_match, wait_until
from support.shaper import Shaper
from support.tap import WireTap
from test_streams_clients import _best_psnr, _chroma, _frames

from spice_twisted.sources.demo_video import Plasma
from spice_twisted.wire.enums import ChannelType, MsgcDisplay, MsgDisplay, MsgMain
from spice_twisted.wire.messages import decode_body, message

STREAM_REPORT = message(ChannelType.DISPLAY, "STREAM_REPORT", from_server=False)
MAIN_INIT = message(ChannelType.MAIN, "INIT")
# 8 Mbit/s, 40 ms each way. Not 10 Mbit/s: that is within 5% of the WAN threshold
# (upstream's 10 Mibit/s), where the connect-time test's noise on a loaded machine (its
# small PINGs 8 ms later than the large one's share) puts it above; one clean-clone run
# waited 60 s in vain for the verdict there.
RATE, DELAY = 8e6 / 8, 0.040


def _reports(conn) -> list[dict]:
    return [decode_body(STREAM_REPORT, b) for t, b in list(conn.client_messages) if t == MsgcDisplay.STREAM_REPORT]


def _wait_verdicts(server, shaper: Shaper, timeout: float = 60.0) -> None:
    """Until the server judges the client behind the shaper (known by the ports the shaper
    connected from) a WAN and the other one a LAN; on a timeout, what it measured."""

    def verdicts() -> dict[bool, bool]:
        shaped = set(shaper.upstream_ports)
        return {int(c["address"].rsplit(":", 1)[1]) in shaped: c["link"]["wan"] for c in server.stats()["clients"]}

    try:
        wait_until(lambda: verdicts() == {True: True, False: False}, timeout, "the shaped client judged WAN, the other LAN")
    except AssertionError as exc:
        links = [(c["address"], c["link"]) for c in server.stats()["clients"]]
        tests = [line for line in server.log().splitlines() if "net test" in line]
        raise AssertionError(f"{exc}: shaper ports {shaper.upstream_ports}; links {links}; {tests}") from None


def test_a_client_on_a_shaped_80ms_8mbit_link_plays_the_low_tier_beside_a_lan_client_and_both_end_exact(spawn, tap_for):
    server = spawn.harness()  # the demo, its video off
    with Shaper(server.port, rate=RATE, delay=DELAY) as shaper, WireTap(shaper.port) as slow_tap:
        slow = spawn.client("--port", str(slow_tap.port))
        slow.wait_event("mark", timeout=60)
        slow_conn = slow_tap.display()
        fast_tap, fast = tap_for(server)
        fast.wait_event("mark")
        fast_conn = fast_tap.display()
        # The server's link estimate: its own network test at connect (a 250 KiB PING) puts
        # 8 Mbit/s below upstream's 10 Mibit/s threshold; on a loaded machine the test may
        # be inconclusive, and then the rate the video's frames leave at says it.
        server.command("video on", "video")
        _wait_verdicts(server, shaper)
        judged = slow_conn.mark()  # frames sent before the verdict may still be on the link: let them pass
        slow_conn.wait_for(lambda k: len(_frames(k, judged)) >= 8, 60, "8 frames after the verdict")
        for conn in (slow_conn, fast_conn):
            conn.wait_for(lambda k: len(_frames(k)) >= 10, 60, "STREAM_CREATE and 10 frames")
        # A window of the video, counted on the wire: the tier of each frame, how many, how large.
        marks = (slow_conn.mark(), fast_conn.mark())
        t0 = time.monotonic()
        fast_conn.wait_for(lambda k: len(_frames(k, marks[1])) >= 60, 60, "60 more frames on the LAN")
        seconds = time.monotonic() - t0
        slow_frames, fast_frames = _frames(slow_conn, marks[0]), _frames(fast_conn, marks[1])
        assert {_chroma(f) for f in fast_frames} == {"444"}  # the full tier
        assert slow_frames and {_chroma(f) for f in slow_frames} == {"422"}  # the low tier
        assert len(slow_frames) <= 0.6 * len(fast_frames)  # every other frame, or fewer
        mean = [sum(map(len, fs)) / len(fs) for fs in (slow_frames, fast_frames)]
        assert mean[0] < 0.8 * mean[1], mean  # lower quality, 4:2:2
        slow_rate = sum(map(len, slow_frames)) * 8 / seconds
        assert slow_rate < 0.5 * RATE * 8, slow_rate  # the video leaves most of the link free
        plasma = Plasma()
        assert wait_until(lambda: (q := _best_psnr(fast, server, plasma)) >= 30 and q, 30, "the LAN client's video at >= 30 dB")
        assert wait_until(lambda: (q := _best_psnr(slow, server, plasma)) >= 28 and q, 30, "the shaped client's video at >= 28 dB")
        # spice-gtk's reports: on the clock the main channel's INIT gave it, the frames come
        # before their time (none late past the margin), and not far before it.
        slow_conn.wait_for(lambda k: len(_reports(k)) >= 4, 60, "4 STREAM_REPORTs from the shaped client")
        early = [r["last_frame_delay"] for r in _reports(slow_conn)[2:]]
        early.sort()
        assert early[len(early) // 2] >= 0, early
        assert early[len(early) // 2] <= 250, early
        (main,) = slow_tap.channels(ChannelType.MAIN)
        init = [decode_body(MAIN_INIT, b) for t, b in main.snapshot() if t == MsgMain.INIT]
        stamps = [struct.unpack_from("<I", b, 4)[0] for t, b in slow_conn.snapshot() if t == MsgDisplay.STREAM_DATA]
        assert 0 < init[0]["multi_media_time"] < stamps[0] <= stamps[-1]  # one clock
        # The video stops: both converge to the exact picture.
        server.command("video off", "video")
        for conn in (slow_conn, fast_conn):
            conn.wait_for(lambda k: MsgDisplay.STREAM_DESTROY in [t for t, _ in k.snapshot()], 60, "STREAM_DESTROY")
        server.pause()
        server.command("flush", "flush")
        wait_match(lambda: as_rgb(server.framebuffer()), [slow, fast], "the server's framebuffer", timeout=60)
