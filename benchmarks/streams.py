"""Video stream frames: bytes, encode time and decoded quality of each MJPEG tier, VP8, VP9 and H.264.

For the demo's plasma (sources/demo_video.py) and a generated photo panned a pixel a frame,
at 320x180 (the demo's video), 640x360 and 1280x720: per tier (codecs/video.py: `mjpeg`, `mjpeg_low`, `mjpeg_min`) and for the
chroma choices we weighed, the bytes per frame and per second at 25 fps (the low tier
sends every other frame), the encode time (fastest of repeats, one thread), and PSNR as
the clients decode it: spice-gtk's MJPEG decoder uses libjpeg's fast DCT without fancy
upsampling (emulated with simplejpeg's fastdct/fastupsample), a browser (spice-html5)
decodes like Pillow. VP8, VP9 (libvpx realtime) and H.264 (libx264 zerolatency), each
codecs.video's StatefulEncoder through PyAV: the inter frames' bytes, the encode CPU time,
PSNR decoded by FFmpeg. Writes the table into docs/codecs.md between <!-- mjpeg:begin -->
and <!-- mjpeg:end -->. One run on a shared machine: read ratios, not digits.

    .venv/bin/python benchmarks/streams.py [--no-write] [--parts codecs,server,latency] [--mbit 10,2]

Part `server`: the server in-process (real channel clients on in-memory transports, a
fake clock, encodes inline so the process's CPU time is all the server's work), a video
area of 640x360 or 1280x720 redrawn at 25 fps with moving plasma, 1 or 16 clients that
read and ACK everything: server CPU per second of video and bytes per second per client,
with streams (MJPEG's three tiers; VP8 and H.264, each full and low) and without (`--streaming-video off`: JPEG images
with `--jpeg-wan-compression always`, or the LAN default, QUIC). Written to
docs/performance.md between <!-- streams:begin --> and <!-- streams:end -->.

Part `latency`: input-to-display latency, timed at a client. The server (benchmarks/_server.py,
built as `twistd spice`) runs the demo with its video playing (`--source demo:video`); one
light protocol client (benchmarks/fanout.py's, advertising MJPEG streams) reaches it through
tests/support/shaper.py (80 ms round trip, 10 Mbit/s, a token bucket of 4 KiB), links MAIN,
DISPLAY and INPUTS, and types into the demo's text line: a key, then Backspace, each
KEY_DOWN+KEY_UP at a random 0.25-0.45 s after the last result. The latency of one press is
from its KEY_DOWN leaving the client to the arrival of the first draw inside the text line
(the drawn result: this client draws what it gets as it gets it). Streams on and off
(`--streaming-video off`), and the display socket's TCP_NOTSENT_LOWAT (channels/link.py)
on and off, at 10 Mbit/s and at 2 Mbit/s (where the full-tier video alone overfills
the link). Meanwhile `ss` samples the server's display socket: bytes in its kernel send
buffer (Send-Q) and of those not yet sent (notsent). Written to docs/performance.md between
<!-- streams-latency:begin --> and <!-- streams-latency:end -->.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
from _report import command_line, cpu_model, load_average, publish_table  # noqa: E402
from support.images import photo, pillow_decode, psnr  # noqa: E402

from spice_twisted.codecs import video  # noqa: E402
from spice_twisted.sources.demo_video import Plasma  # noqa: E402

FPS = 25
# (name, quality, subsampling, frame divisor): the tiers, then the choices we weighed.
VARIANTS = [
    ("mjpeg (full tier)", video.FULL_QUALITY, video.FULL_SUBSAMPLING, 1),
    ("mjpeg_low (low tier)", video.LOW_QUALITY, video.LOW_SUBSAMPLING, 2),
    ("mjpeg_min (least tier)", video.MIN_QUALITY, video.MIN_SUBSAMPLING, 4),
    ("q80 4:2:0 (libjpeg's default chroma)", 80, "420", 1),
    ("q80 4:2:2", 80, "422", 1),
]


def fastest(fn, reps: int = 7) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def frames(kind: str, w: int, h: int, n: int = 6) -> list[np.ndarray]:
    if kind == "plasma":
        p = Plasma(w, h)
        return [p.frame(k) for k in range(n)]
    big = photo(h, w + n, 5)  # panned a pixel a frame
    return [np.ascontiguousarray(big[:, k : k + w]) for k in range(n)]


def measure() -> list[list[str]]:
    rows = []
    for kind in ("plasma", "photo"):
        for w, h in ((320, 180), (640, 360), (1280, 720)):
            fs = frames(kind, w, h)
            for name, q, ss, div in VARIANTS:
                sizes, gtk, browser, secs = [], [], [], []
                for f in fs:
                    data = simplejpeg.encode_jpeg(f, quality=q, colorspace="BGRX", colorsubsampling=ss)
                    sizes.append(len(data))
                    secs.append(
                        fastest(lambda f=f, q=q, ss=ss: simplejpeg.encode_jpeg(f, quality=q, colorspace="BGRX", colorsubsampling=ss), 3)
                    )
                    fast = simplejpeg.decode_jpeg(data, colorspace="BGRX", fastdct=True, fastupsample=True)
                    gtk.append(psnr(fast, f))
                    browser.append(psnr(pillow_decode(data), f))
                per_frame = float(np.mean(sizes))
                rows.append(
                    [
                        f"{kind} {w}x{h}",
                        name,
                        f"{per_frame / 1024:.1f}",
                        f"{per_frame * FPS / div * 8 / 1e6:.2f}",
                        f"{min(secs) * 1000:.2f}",
                        f"{np.mean(gtk):.1f}",
                        f"{np.mean(browser):.1f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
            for codec in (video.VP8, video.VP9, video.H264):
                for tier in (codec, video.STATEFUL_LOW[codec]):
                    rows.append(stateful_row(tier, kind, w, h))
                    print(" | ".join(rows[-1]), flush=True)
    return rows


FFMPEG_DECODER = {video.VP8: "vp8", video.VP9: "vp9", video.H264: "h264"}


def stateful_row(tier: str, kind: str, w: int, h: int, n: int = 24) -> list[str]:
    """A tier of VP8, VP9 or H.264 over `n` frames it encodes (a key frame, then inter
    frames; a low tier takes every other frame of the video): the inter frames' mean bytes,
    the median encode CPU time per frame, PSNR decoded by FFmpeg's own decoder (spice-gtk's
    GStreamer decoders are libvpx and FFmpeg's: the same formats, their own colour conversion)."""
    import av

    div = video.RATE_DIVISOR.get(tier, 1)
    enc = video.stateful_encoder(tier, w, h, FPS)
    dec = av.CodecContext.create(FFMPEG_DECODER[video.FAMILY[tier]], "r")
    sizes, quality, secs = [], [], []
    for f in frames(kind, w, h, n * div)[::div]:
        t = time.process_time()  # CPU: a loaded machine's wall time says little here
        payload = enc.encode(f, False)
        secs.append(time.process_time() - t)
        data = bytes(payload.fields["data"].buf)
        sizes.append(len(data))
        (out,) = dec.decode(av.Packet(data))
        quality.append(psnr(out.to_ndarray(format="bgra"), f))
    per_frame = float(np.mean(sizes[1:]))
    rate = enc.bps / 1e6
    return [
        f"{kind} {w}x{h}",
        f"{tier} (target {rate:.1f} Mbit/s)",
        f"{per_frame / 1024:.1f}",
        f"{per_frame * FPS / div * 8 / 1e6:.2f}",
        f"{np.median(secs) * 1000:.2f} (CPU)",
        f"{np.mean(quality[4:]):.1f} (FFmpeg)",
        "-",
    ]


def serve(w: int, h: int, clients: int, mode: str, seconds: float = 2.0) -> tuple[float, float]:
    """(server CPU seconds per second of video, bytes per second per client)."""
    from support.inprocess import Canvas, Reader, make_server, open_display

    from spice_twisted.render.rect import Rect
    from spice_twisted.wire.enums import DisplayCap

    class Screen(Canvas):
        width, height = w + 64, h + 64

    class Counting(Reader):
        def read(self):  # count, do not decode: the clients' work is not the server's
            data = self.t.value()
            self.bytes += len(data)
            self.t.clear()
            return []

    srv = make_server(Screen())
    settings = srv.display_settings
    tier, wan, bandwidth = TIER_MODES.get(mode, (mode, False, None))
    if tier in video.STATEFUL:
        settings.video_codecs = (video.FAMILY[tier],)
    if mode.startswith("off"):
        srv.render.streams.set_mode("off")
    if mode == "off-jpeg":
        settings.jpeg_wan_compression = "always"
    caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_VP8, DisplayCap.CODEC_H264, DisplayCap.LZ4_COMPRESSION}
    readers = [Counting(*open_display(srv, caps)) for _ in range(clients)]
    for r in readers:  # the link estimate's verdict and bandwidth, as a shaped link would give them
        r.cc.client.link.is_wan, r.cc.client.link.bandwidth = wan, bandwidth
    area = Rect(32, 32, 32 + w, 32 + h)
    plasma = Plasma(w, h)
    n = int(seconds * FPS)
    pics = [plasma.frame(k) for k in range(n + 8)]

    def frame(k: int) -> None:
        srv.render.primary.pixels[area.top : area.bottom, area.left : area.right] = pics[k]
        srv.render.damage(area)
        srv.render.flush()
        for r in readers:
            r.catch_up(srv)
        srv.reactor.advance(1 / FPS)

    for k in range(8):  # warm up: the stream starts (or not)
        frame(k)
    for r in readers:
        r.bytes = 0
    t = time.process_time()
    for k in range(8, 8 + n):
        frame(k)
    cpu = time.process_time() - t
    return cpu / seconds, float(np.mean([r.bytes for r in readers])) / seconds


# The lower tiers: every client a WAN (the low tiers), one too slow for MJPEG's low tier
# (the least tier: the link estimate at 1 Mbit/s).
TIER_MODES = {
    video.MJPEG_LOW: (video.MJPEG_LOW, True, 100e6),
    video.MJPEG_MIN: (video.MJPEG_MIN, True, 1e6),
    video.VP8_LOW: (video.VP8_LOW, True, 100e6),
    video.H264_LOW: (video.H264_LOW, True, 100e6),
}


def server_rows() -> list[list[str]]:
    rows = []
    for w, h in ((640, 360), (1280, 720)):
        for mode in ("mjpeg", "mjpeg_low", "mjpeg_min", "vp8", "vp8_low", "h264", "h264_low", "off-jpeg", "off-quic"):
            for clients in (1, 16):
                cpu, bps = serve(w, h, clients, mode)
                rows.append([f"{w}x{h}", mode, str(clients), f"{cpu * 100:.0f}%", f"{bps * 8 / 1e6:.2f}"])
                print(" | ".join(rows[-1]), flush=True)
    return rows


# --- input-to-display latency on a shaped link ------------------------------------------------
PRESSES = 40  # key presses measured per configuration (after WARM_PRESSES)
WARM_PRESSES = 4
KEY_A, BACKSPACE = 0x1E, 0x0E


def _intersects(box: dict, r) -> bool:
    return box["left"] < r.right and r.left < box["right"] and box["top"] < r.bottom and r.top < box["bottom"]


async def _sample_queue(port: int, peer: int, stop, out: list[tuple[int, int]]) -> None:
    """Every 50 ms: (Send-Q, notsent) of the server's socket on `port` whose peer is the
    shaper's port `peer` (the display channel's connection)."""
    import asyncio
    import re

    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(
            "ss", "-tinH", "state", "established", f"( sport = :{port} and dport = :{peer} )", stdout=asyncio.subprocess.PIPE
        )
        text = (await proc.communicate())[0].decode()
        best = (0, 0)
        for head, info in zip(text.splitlines()[::2], text.splitlines()[1::2], strict=False):
            sendq = int(head.split()[1])
            m = re.search(r"notsent:(\d+)", info)
            best = max(best, (sendq, int(m.group(1)) if m else 0))
        out.append(best)
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except TimeoutError:
            pass


async def _start_server(port: int, options: list[str], lowat: bool, log_path: Path):
    """benchmarks/_server.py in a child, with channels/link.py's DISPLAY_NOTSENT_LOWAT left
    as it is or set to None (the kernel's default) before the server is built."""
    import asyncio
    import os

    from fanout import ServerChild

    argv = ["--port", str(port), "--listen", "127.0.0.1", "--stats-interval", "0", "--admin-port", "0"]
    argv += ["--max-clients-per-address", "0", *options]
    boot = "import runpy, sys\n"
    if not lowat:
        boot += "import spice_twisted.channels.link as link\nlink.DISPLAY_NOTSENT_LOWAT = None\n"
    boot += "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", boot, str(ROOT / "benchmarks" / "_server.py"), "--", *argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=str(ROOT), limit=16 << 20,
        )  # fmt: skip
    child = ServerChild(proc, log_path)
    ready = await child._read(60.0)
    if ready.get("event") != "ready":
        raise RuntimeError(f"server did not start: {ready}")
    return child


async def measure_latency(streams: bool, lowat: bool, mbit: float, logdir: Path) -> dict:
    import asyncio
    import random

    from fanout import BenchClient, Channel, free_port
    from support.shaper import Shaper

    from spice_twisted.sources.demo import TEXT_BOX
    from spice_twisted.wire.enums import ChannelType, DisplayCap, ImageType, MsgcInputs, MsgDisplay
    from spice_twisted.wire.messages import CLIENT, SERVER, decode_body

    draw_copy = SERVER[(ChannelType.DISPLAY, MsgDisplay.DRAW_COPY)]
    draw_fill = SERVER[(ChannelType.DISPLAY, MsgDisplay.DRAW_FILL)]
    key_down, key_up = CLIENT[(ChannelType.INPUTS, MsgcInputs.KEY_DOWN)], CLIENT[(ChannelType.INPUTS, MsgcInputs.KEY_UP)]
    loop = asyncio.get_running_loop()

    class Typist(BenchClient):
        """Links MAIN, DISPLAY (MJPEG streams advertised) and INPUTS; notes when a draw
        inside the text line arrives; decodes nothing (it only times)."""

        def __init__(self) -> None:
            super().__init__(True, ImageType.LZ4)
            self.caps = (DisplayCap.LZ4_COMPRESSION, DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG)
            self.waiting: asyncio.Future | None = None
            self.stream_frames = 0
            self.inputs: Channel | None = None

        def on_display(self, msg_type: int, body: bytes) -> None:
            if msg_type in (MsgDisplay.STREAM_DATA, MsgDisplay.STREAM_DATA_SIZED):
                self.stream_frames += 1
            elif msg_type in (MsgDisplay.DRAW_COPY, MsgDisplay.DRAW_FILL):
                box = decode_body(draw_copy if msg_type == MsgDisplay.DRAW_COPY else draw_fill, body)["box"]
                if self.waiting is not None and not self.waiting.done() and _intersects(box, TEXT_BOX):
                    self.waiting.set_result(time.monotonic())
            elif msg_type == MsgDisplay.MARK and not self.first_frame.done():
                self.first_frame.set_result(None)

        async def connect(self, port: int) -> None:
            await super().connect(port)  # MAIN and DISPLAY, as every benchmark client links them
            session_id = await self.session
            _, self.inputs = await loop.create_connection(
                lambda: Channel(ChannelType.INPUTS, session_id, lambda t, b: None), "127.0.0.1", port
            )
            await self.inputs.linked

        async def press(self, code: int) -> float:
            assert self.inputs is not None
            self.waiting = loop.create_future()
            t = time.monotonic()
            self.inputs.send(key_down, {"code": code})
            self.inputs.send(key_up, {"code": code | 0x80})
            return await asyncio.wait_for(self.waiting, 30.0) - t

        def close(self) -> None:
            if self.inputs is not None:
                self.inputs.close()
            super().close()

    port = free_port()
    options = ["--source", "demo:video", "--disable-ticketing", "--streaming-video", "filter" if streams else "off"]
    name = f"latency-{'streams' if streams else 'images'}-{'lowat' if lowat else 'default'}-{mbit:g}"
    server = await _start_server(port, options, lowat, logdir / f"{name}.log")
    shaper = Shaper(port, rate=mbit * 1e6 / 8, delay=0.040)
    client = Typist()
    stop = asyncio.Event()
    queue: list[tuple[int, int]] = []
    try:
        await asyncio.wait_for(client.connect(shaper.port), 60.0)
        await asyncio.wait_for(client.first_frame, 60.0)
        await asyncio.sleep(3.0)  # the network test, the stream's start
        display_peer = shaper.upstream_ports[1]  # MAIN, then DISPLAY, then INPUTS
        sampler = asyncio.ensure_future(_sample_queue(port, display_peer, stop, queue))
        s0 = await server.command("sample")
        frames0 = client.stream_frames
        times = []
        rng = random.Random(1)
        for i in range(WARM_PRESSES + PRESSES):
            await asyncio.sleep(rng.uniform(0.25, 0.45))
            dt = await client.press(KEY_A if i % 2 == 0 else BACKSPACE)
            if i >= WARM_PRESSES:
                times.append(dt)
        s1 = await server.command("sample")
        stop.set()
        await sampler
        frames = client.stream_frames - frames0
    finally:
        client.close()
        shaper.close()
        await asyncio.sleep(0.2)
        await server.stop()
    (display,) = [ch for c in s1["stats"]["clients"] for ch in c["channels"] if ch["channel"] == "display"]
    (display0,) = [ch for c in s0["stats"]["clients"] for ch in c["channels"] if ch["channel"] == "display"]
    link = s1["stats"]["clients"][0]["link"]
    ms = sorted(t * 1000 for t in times)
    return {
        "name": name,
        "streams": streams,
        "lowat": lowat,
        "mbit": mbit,
        "p50": ms[len(ms) // 2],
        "p95": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "max": ms[-1],
        "sendq": max(q for q, _ in queue) if queue else 0,
        "notsent": max(n for _, n in queue) if queue else 0,
        "sendq_median": sorted(q for q, _ in queue)[len(queue) // 2] if queue else 0,
        "frames": frames,
        "coalesced": display["coalesced"] - display0["coalesced"],
        "wan": link["wan"],
        "low_tier": display.get("streams", {}).get("low_tier"),
    }


# No pixmap cache, no GLZ (the typist decodes nothing).


def latency_rows(configs: list[tuple[bool, bool, float]]) -> list[list[str]]:
    import asyncio
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="streams-latency-") as tmp:
        for streams, lowat, mbit in configs:
            r = asyncio.run(measure_latency(streams, lowat, mbit, Path(tmp)))
            rows.append(
                [
                    f"{r['mbit']:g} Mbit/s, 80 ms",
                    "stream" if r["streams"] else "images",
                    "bounded (BDP if WAN)" if r["lowat"] else "kernel default",
                    f"{r['p50']:.0f}",
                    f"{r['p95']:.0f}",
                    f"{r['max']:.0f}",
                    f"{r['sendq_median'] / 1024:.0f} / {r['sendq'] / 1024:.0f}",
                    f"{r['notsent'] / 1024:.0f}",
                    str(r["coalesced"]),
                    ("WAN" if r["wan"] else "LAN") + (", low tier" if r["low_tier"] else ""),
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--parts", default="codecs,server", help="codecs, server, latency (comma-separated)")
    ap.add_argument("--mbit", type=lambda v: [float(x) for x in v.split(",")], default=[10.0, 2.0], help="shaped rates for latency")
    args = ap.parse_args()
    parts = args.parts.split(",")
    machine = f"Measured by `{command_line()}` on {cpu_model()} (load {load_average()})"
    if "latency" in parts:
        configs = [(s, lw, m) for m in args.mbit for s in (True, False) for lw in (True, False)]
        lrows = latency_rows(configs)
        header = [
            "link",
            "video sent as",
            "TCP_NOTSENT_LOWAT",
            "p50 ms",
            "p95 ms",
            "max ms",
            "Send-Q KiB (median / max)",
            "notsent KiB (max)",
            "frames coalesced",
            "verdict",
        ]
        intro = [
            f"{machine}: one light client through tests/support/shaper.py, {PRESSES} key presses each,",
            "the demo's 320x180 plasma playing at 20 fps. Goal with the video on: p50 <= 120 ms, p95 <= 300 ms.",
        ]
        publish_table(ROOT / "docs" / "performance.md", "streams-latency", intro, header, lrows, write=not args.no_write)
    if "server" in parts:
        srows = server_rows()
        header = ["video", "sent as", "clients", "server CPU (of one core)", "Mbit/s per client"]
        intro = [
            f"{machine}: the server in-process, encodes inline, {FPS} fps of moving plasma.",
            "`mjpeg`/`vp8`/`h264`: a stream (one encode per frame for every client); `_low`: its low tier (every",
            "client judged a WAN), `mjpeg_min`: the least tier (a WAN of 1 Mbit/s); `off-jpeg`: images, JPEG",
            "(`--streaming-video off --jpeg-wan-compression always`); `off-quic`: images, the LAN default (QUIC).",
        ]
        publish_table(ROOT / "docs" / "performance.md", "streams", intro, header, srows, write=not args.no_write)
    if "codecs" not in parts:
        return
    rows = measure()
    header = ["content", "encoding", "KiB/frame", f"Mbit/s at {FPS} fps", "encode ms", "PSNR spice-gtk", "PSNR browser"]
    intro = [f"{machine}; one thread, fastest of repeats."]
    publish_table(ROOT / "docs" / "codecs.md", "mjpeg", intro, header, rows, write=not args.no_write)


if __name__ == "__main__":
    main()
