"""Video stream frames: bytes, encode time and decoded quality of each MJPEG tier.

For the demo's plasma (sources/demo_video.py) and a generated photo panned a pixel a frame,
at 320x180 (the demo's video), 640x360 and 1280x720: per tier (codecs/video.py: `mjpeg`, `mjpeg_low`) and for the
chroma choices we weighed, the bytes per frame and per second at 25 fps (the low tier
sends every other frame), the encode time (fastest of repeats, one thread), and PSNR as
the clients decode it: spice-gtk's MJPEG decoder uses libjpeg's fast DCT without fancy
upsampling (emulated with simplejpeg's fastdct/fastupsample), a browser (spice-html5)
decodes like Pillow. VP8 (codecs.video.Vp8Encoder, libvpx realtime through PyAV): the
inter frames' bytes, the encode time, PSNR decoded by FFmpeg. Writes the table into docs/codecs.md between <!-- mjpeg:begin -->
and <!-- mjpeg:end -->. One run on a shared machine: read ratios, not digits.

    .venv/bin/python benchmarks/streams.py [--no-write]

Part `server`: the server in-process (real channel clients on in-memory transports, a
fake clock, encodes inline so the process's CPU time is all the server's work), a video
area of 640x360 or 1280x720 redrawn at 25 fps with moving plasma, 1 or 16 clients that
read and ACK everything: server CPU per second of video and bytes per second per client,
with streams (MJPEG full tier; VP8) and without (`--streaming-video off`: JPEG images
with `--jpeg-wan-compression always`, or the LAN default, QUIC). Written to
docs/performance.md between <!-- streams:begin --> and <!-- streams:end -->.

Not here yet (issue 22): input-to-display latency with the video playing on a shaped link.
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
from _report import command_line, cpu_model, load_average, md_table, publish  # noqa: E402
from support.images import photo, pillow_decode, psnr  # noqa: E402

from spice_twisted.codecs import video  # noqa: E402
from spice_twisted.sources.demo_video import Plasma  # noqa: E402

FPS = 25
# (name, quality, subsampling, frame divisor): the tiers, then the choices we weighed.
VARIANTS = [
    ("mjpeg (full tier)", video.FULL_QUALITY, video.FULL_SUBSAMPLING, 1),
    ("mjpeg_low (low tier)", video.LOW_QUALITY, video.LOW_SUBSAMPLING, 2),
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
            rows.append(vp8_row(kind, w, h))
            print(" | ".join(rows[-1]), flush=True)
    return rows


def vp8_row(kind: str, w: int, h: int, n: int = 24) -> list[str]:
    """VP8 over `n` frames (a key frame, then inter frames): the inter frames' mean bytes,
    the mean encode time per frame, PSNR decoded by FFmpeg's VP8 decoder (GStreamer's
    vp8dec in spice-gtk is libvpx: the same format, its own colour conversion)."""
    import av

    enc = video.Vp8Encoder(w, h, FPS)
    dec = av.CodecContext.create("vp8", "r")
    sizes, quality, secs = [], [], []
    for f in frames(kind, w, h, n):
        t = time.process_time()  # CPU: a loaded machine's wall time says little here
        payload = enc.encode(f, False)
        secs.append(time.process_time() - t)
        data = bytes(payload.fields["data"].buf)
        sizes.append(len(data))
        (out,) = dec.decode(av.Packet(data))
        quality.append(psnr(out.to_ndarray(format="bgra"), f))
    per_frame = float(np.mean(sizes[1:]))
    rate = enc.ctx.bit_rate / 1e6
    return [
        f"{kind} {w}x{h}",
        f"vp8 (target {rate:.1f} Mbit/s)",
        f"{per_frame / 1024:.1f}",
        f"{per_frame * FPS * 8 / 1e6:.2f}",
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
    if mode == "vp8":
        settings.video_codecs = ("vp8",)
    if mode.startswith("off"):
        srv.render.streams.set_mode("off")
    if mode == "off-jpeg":
        settings.jpeg_wan_compression = "always"
    caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_VP8, DisplayCap.LZ4_COMPRESSION}
    readers = [Counting(*open_display(srv, caps)) for _ in range(clients)]
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


def server_rows() -> list[list[str]]:
    rows = []
    for w, h in ((640, 360), (1280, 720)):
        for mode in ("mjpeg", "vp8", "off-jpeg", "off-quic"):
            for clients in (1, 16):
                cpu, bps = serve(w, h, clients, mode)
                rows.append([f"{w}x{h}", mode, str(clients), f"{cpu * 100:.0f}%", f"{bps * 8 / 1e6:.2f}"])
                print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--parts", default="codecs,server")
    args = ap.parse_args()
    parts = args.parts.split(",")
    machine = f"Measured by `{command_line()}` on {cpu_model()} (load {load_average()})"
    if "server" in parts:
        srows = server_rows()
        header = ["video", "sent as", "clients", "server CPU (of one core)", "Mbit/s per client"]
        lines = [
            f"{machine}: the server in-process, encodes inline, {FPS} fps of moving plasma.",
            "`mjpeg`/`vp8`: a stream (one encode per frame for every client); `off-jpeg`: images, JPEG",
            "(`--streaming-video off --jpeg-wan-compression always`); `off-quic`: images, the LAN default (QUIC).",
            "",
            md_table(header, srows),
        ]
        publish(ROOT / "docs" / "performance.md", "streams", lines, write=not args.no_write)
    if "codecs" not in parts:
        return
    rows = measure()
    header = ["content", "encoding", "KiB/frame", f"Mbit/s at {FPS} fps", "encode ms", "PSNR spice-gtk", "PSNR browser"]
    lines = [
        f"Measured by `{command_line()}` on {cpu_model()} (load {load_average()}); one thread, fastest of repeats.",
        "",
        md_table(header, rows),
    ]
    publish(ROOT / "docs" / "codecs.md", "mjpeg", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
