"""Codec benchmark: bytes, quality and speed of every codec on each kind of content, and the classifier.

For a fixed set of generated images (tests/support/images.py: text and UI, a photo,
smooth noise, a gradient, a mostly flat desktop, noise; 1024x768 and 256x256):

- every codec we have (bitmap, lz4, lz, glz and zlib-glz on the image alone, quic, jpeg at
  qualities 50, 85 = the default, 95):
  bytes per megapixel on the wire (the image's payload after its descriptor), PSNR for
  JPEG (decoded by Pillow, another libjpeg than the encoder's), an exactness check for
  the lossless ones (QUIC by our own C decoder, LZ and GLZ by tests/support/lz_decode.py;
  tests/test_quic_clients.py checks QUIC
  against spice-gtk), and encode megapixels per second (the fastest of repeated encodes on
  one thread); whether the QUIC encode releases the GIL;
- `classify.lossy_pays`: its verdict, the graduality score, and its cost per call;
- JPEG, LZ4 and QUIC encode time by size (16x16 .. 512x512) against a codec-pool
  hand-off, for `jpeg.INLINE_PIXELS` and `quic.INLINE_PIXELS`;
- the JPEG bindings we chose between (Pillow, simplejpeg, PyTurboJPEG where installed):
  speed, bytes, PSNR, whether BGRX goes in without a copy, and whether the encode
  releases the GIL (two threads at once against one twice; a Python loop's progress
  during the calls: 0 = the call holds the GIL). The numpy copy is the control.
- a placeholder for the bytes the pixmap cache and COPY_BITS save on the demo over a
  minute (not measured yet: `demo_savings`);
- LZ against LZ4 on the same images, and GLZ (one dictionary) on sequences that repeat
  earlier content: a scrolling text window, a window moved across the screen (`lz_glz`,
  written to docs/codecs.md between <!-- lz-glz:begin --> and <!-- lz-glz:end -->;
  `--lz-only` runs just that part);
- LZ_PLT (palette LZ, what spice-gtk gets under `lz`) against LZ_RGB32 on terminal-like
  and generated pictures and, with `--frames DIR`, on the Xvfb pictures
  benchmarks/glz_x11.py --dump saved (`lz_plt`; `--plt` runs just that part, written
  between <!-- lz-plt:begin --> and <!-- lz-plt:end --> in docs/codecs.md and
  docs/performance.md).

Writes the "Codecs" section of docs/performance.md (between <!-- codecs:begin --> and
<!-- codecs:end -->) and the binding table in docs/codecs.md (between
<!-- jpeg-bindings:begin --> and <!-- jpeg-bindings:end -->). One run on a shared
machine: read ratios, not digits; nothing asserts them.

    .venv/bin/python benchmarks/codecs.py [--no-write] [--quick] [--lz-only] [--plt [--frames DIR]]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))  # the checkout, its test images, codec_pool's helpers

import argparse  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, cpu_model, load_average, md_table, write_between  # noqa: E402
from codec_pool import handoff, noop, parallel_ratio, python_progress  # noqa: E402
from PIL import Image  # noqa: E402
from support import images  # noqa: E402
from support.lz_decode import GlzWindow, decode_lz, decode_lz_plt  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402

from spice_twisted import codecs  # noqa: E402
from spice_twisted.codecs import classify, glz, jpeg, lz, lz4, quic  # noqa: E402
from spice_twisted.wire.enums import ImageType  # noqa: E402

PERF_DOC = ROOT / "docs" / "performance.md"
CODECS_DOC = ROOT / "docs" / "codecs.md"
SIZES = ((768, 1024), (256, 256))  # h, w
QUALITIES = (50, jpeg.DEFAULT_QUALITY, 95)
SIDES = (16, 32, 48, 64, 96, 128, 256, 512)
KIND_NAMES = {
    "text_ui": "text and UI",
    "photo": "photo",
    "smooth_noise": "smooth noise",
    "gradient": "gradient",
    "mostly_flat": "mostly flat",
    "noise": "noise",
}


def fastest(fn: Callable[[], Any], budget: float = 0.2, min_reps: int = 7) -> float:
    """Seconds of the fastest fn() over repetitions filling about `budget` seconds: on a machine
    shared with other work the fastest run is the least disturbed one (a median moves with the load)."""
    fn()  # warm
    t = time.perf_counter()
    fn()
    best = max(time.perf_counter() - t, 1e-7)
    for _ in range(max(min_reps, min(20000, int(budget / best)))):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _glz_alone() -> Callable[[np.ndarray], Any]:
    """GLZ on one image by itself, as a client's first image: a fresh dictionary per call
    (its set-up, about 20 us, is counted). A dictionary kept across the repeats would hold
    earlier copies of the image: even with min_ref_id excluding them its hash table leads
    into them, which costs photos up to 2x (a cache miss per candidate)."""

    def encode(px: np.ndarray) -> Any:
        return glz.GlzEncoder(px.shape[0] * px.shape[1]).encode(px, 0, 0)

    return encode


def _zlib_glz_alone() -> Callable[[np.ndarray], Any]:
    """The same deflated again (ZLIB_GLZ_RGB; plain GLZ where deflate saves nothing)."""
    g = _glz_alone()

    def encode(px: np.ndarray) -> Any:
        p = g(px)
        return glz.zlib_glz(p) or p

    return encode


def codec_list() -> list[tuple[str, Callable[[np.ndarray], Any]]]:
    out: list[tuple[str, Callable[[np.ndarray], Any]]] = [
        ("bitmap", codecs.ENCODERS[codecs.BITMAP]),
        ("lz4", codecs.ENCODERS[codecs.LZ4]),
        ("lz", codecs.ENCODERS[codecs.LZ]),
        ("glz", _glz_alone()),
        ("zlib-glz", _zlib_glz_alone()),
        ("quic", codecs.ENCODERS[codecs.QUIC]),
    ]
    for q in QUALITIES:
        out.append((f"jpeg q{q}", lambda px, q=q: jpeg.encode(px, quality=q)))
    return out


def decoded(name: str, payload: Any, px: np.ndarray) -> np.ndarray:
    h, w = px.shape[:2]
    data = payload.fields["data"]
    if name == "bitmap":
        return np.frombuffer(bytes(data.buf), np.uint8).reshape(h, w, 4)
    if name == "lz4":
        return lz4.decode(data.buf, w, h)
    if name == "lz":
        return decode_lz(data.buf)
    if name in ("glz", "zlib-glz"):
        buf = bytes(data.buf)
        if "glz_data_size" in payload.fields:
            buf = glz.unzlib_glz(buf, payload.fields["glz_data_size"])
        return GlzWindow().decode(buf)[1]
    if name == "quic":
        return quic.decode(data.buf)
    return images.pillow_decode(data.buf)


# --- part 1: every codec on every kind -------------------------------------------------------------
def content(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for h, w in SIZES:
        for kind, make in images.KINDS.items():
            px = make(h, w)
            mp = h * w / 1e6
            row: dict[str, Any] = {"kind": kind, "w": w, "h": h, "codecs": {}}
            for name, enc in codec_list():
                payload = enc(px)
                out = decoded(name, payload, px)
                exact = bool(np.array_equal(out[..., :3], px[..., :3]))
                secs = fastest(lambda enc=enc, px=px: enc(px), budget=0.05 if quick else 0.2)
                row["codecs"][name] = {
                    "bytes": payload.nbytes,
                    "bytes_per_mp": payload.nbytes / mp,
                    "psnr": None if exact else images.psnr(out, px),
                    "exact": exact,
                    "mp_s": mp / secs,
                }
            row["graduality"] = classify.graduality(px)
            row["pays"] = classify.lossy_pays(px)
            row["classify_us"] = 1e6 * fastest(lambda px=px: classify.lossy_pays(px), budget=0.05 if quick else 0.2)
            rows.append(row)
            c = row["codecs"]
            print(
                f"{w}x{h} {kind:13s} lossy_pays={row['pays']!s:5} ({row['graduality']:+.3f}, {row['classify_us']:.0f} us)  "
                + "  ".join(
                    f"{n} {v['bytes_per_mp'] / 1024:.0f} KiB/MP {v['mp_s']:.0f} MP/s" + (f" {v['psnr']:.1f} dB" if v["psnr"] else "")
                    for n, v in c.items()
                ),
                flush=True,
            )
    return rows


# --- part 2: JPEG by size against a hand-off --------------------------------------------------------
async def sizes(reactor: Any, quick: bool) -> dict[str, Any]:
    pool = ThreadPool(1, 2, name="bench-codec")  # as render/codec_pool.py makes it
    pool.start()
    try:
        hand = await handoff(reactor, pool, noop, rounds=300 if quick else 2000)
    finally:
        pool.stop()
    rows = []
    for side in SIDES:
        px = images.photo(side, side)
        rows.append(
            {
                "side": side,
                "jpeg_us": 1e6 * fastest(lambda px=px: jpeg.encode(px)),
                "lz4_us": 1e6 * fastest(lambda px=px: lz4.encode(px)),
                "quic_us": 1e6 * fastest(lambda px=px: quic.encode(px)),
                "classify_us": 1e6 * fastest(lambda px=px: classify.lossy_pays(px)),
            }
        )
        print(
            f"{side}x{side}: jpeg {rows[-1]['jpeg_us']:.1f} us  lz4 {rows[-1]['lz4_us']:.1f} us  quic {rows[-1]['quic_us']:.1f} us  "
            f"classify {rows[-1]['classify_us']:.1f} us",
            flush=True,
        )
    print(f"no-op hand-off: reactor CPU {hand['reactor_cpu_us']:.1f} us, worker {hand['worker_cpu_us']:.1f} us", flush=True)
    return {"handoff": hand, "rows": rows, "quic_gil": quic_gil(quick)}


def quic_gil(quick: bool) -> dict[str, float]:
    """Does our C encoder release the GIL? (the codec pool's two threads need it to)"""
    px = images.photo(1024, 1024)
    ratio = parallel_ratio(lambda: quic.encode(px), 3 if quick else 7)
    progress = python_progress(lambda: quic.encode(px), 0.5 if quick else 1.5)
    out = {"mib": px.nbytes / 2**20, "ratio": ratio["ratio"], "progress": progress["ratio"]}
    print(f"quic GIL: two threads / one twice {out['ratio']:.2f}, Python progress {out['progress']:.2f}", flush=True)
    return out


# --- part 3: the bindings ---------------------------------------------------------------------------
def _pillow(px: np.ndarray, q: int) -> bytes:
    h, w = px.shape[:2]
    px = np.ascontiguousarray(px)  # Pillow reads only contiguous buffers
    im = Image.frombuffer("RGB", (w, h), px, "raw", "BGRX", 0, 1)  # unpacks BGRX into Pillow's own copy
    out = io.BytesIO()
    im.save(out, "JPEG", quality=q, subsampling=2)  # 2 = 4:2:0
    return out.getvalue()


def bindings() -> dict[str, Callable[[np.ndarray, int], bytes]]:
    import simplejpeg

    out: dict[str, Callable[[np.ndarray, int], bytes]] = {
        "simplejpeg": lambda px, q: simplejpeg.encode_jpeg(px, quality=q, colorspace="BGRX", colorsubsampling="420"),
        "pillow": _pillow,
    }
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
        out["pyturbojpeg"] = lambda px, q: tj.encode(px, quality=q, pixel_format=turbojpeg.TJPF_BGRX, jpeg_subsample=turbojpeg.TJSAMP_420)
    except Exception as exc:  # noqa: BLE001  (not installed, or no libturbojpeg it accepts)
        print(f"pyturbojpeg: not measured ({type(exc).__name__}: {str(exc).splitlines()[0]})", flush=True)
    return out


def binding_versions() -> dict[str, str]:
    import PIL
    import simplejpeg
    from PIL import features

    out = {
        "simplejpeg": f"simplejpeg {simplejpeg.__version__} (libjpeg-turbo linked into the wheel)",
        "pillow": f"Pillow {PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo')} in its wheel)",
    }
    try:
        import importlib.metadata

        import turbojpeg  # noqa: F401

        out["pyturbojpeg"] = f"PyTurboJPEG {importlib.metadata.version('PyTurboJPEG')} (the system's libturbojpeg{system_turbojpeg()})"
    except Exception:  # noqa: BLE001, S110
        pass
    return out


def system_turbojpeg() -> str:
    """' X.Y.Z' of Debian's libturbojpeg0 where dpkg knows it, else ''."""
    import subprocess

    try:
        run = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libturbojpeg0"], capture_output=True, text=True, check=False)  # noqa: S607
    except OSError:
        return ""
    return f" {run.stdout.split(':')[-1].split('-')[0]}, Debian libturbojpeg0" if run.returncode == 0 and run.stdout else ""


def extra_alloc(fn: Callable[[], Any], out_len: int) -> int:
    """Bytes allocated by one call beyond its output: a copy of the input shows up here."""
    fn()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return max(0, peak - out_len)


def compare_bindings(quick: bool) -> dict[str, Any]:
    px = images.photo(768, 1024)
    view = images.photo(900, 1200)[50:818, 80:1104]  # the same size as a strided crop of a larger frame
    big = np.ascontiguousarray(np.concatenate([px] * 4))  # 12 MiB, for the GIL checks
    repeats = 3 if quick else 7
    out: dict[str, Any] = {"versions": binding_versions(), "rows": {}}
    encs = bindings()
    # speed: the bindings take turns, one encode each per round, so the other work on the machine
    # disturbs them alike; the fastest encode of each counts
    best = dict.fromkeys(encs, float("inf"))
    for _ in range(10 if quick else 40):
        for name, enc in encs.items():
            t = time.perf_counter()
            enc(px, jpeg.DEFAULT_QUALITY)
            best[name] = min(best[name], time.perf_counter() - t)
    for name, enc in encs.items():
        data = enc(px, jpeg.DEFAULT_QUALITY)
        row = {
            "mp_s": px.shape[0] * px.shape[1] / 1e6 / best[name],
            "bytes": len(data),
            "psnr": images.psnr(images.pillow_decode(data), px),
            "extra_alloc": extra_alloc(lambda enc=enc: enc(px, jpeg.DEFAULT_QUALITY), len(data)),
            "extra_alloc_view": extra_alloc(lambda enc=enc: enc(view, jpeg.DEFAULT_QUALITY), len(enc(view, jpeg.DEFAULT_QUALITY))),
            "parallel": parallel_ratio(lambda enc=enc: enc(big, jpeg.DEFAULT_QUALITY), repeats),
            "progress": python_progress(lambda enc=enc: enc(big, jpeg.DEFAULT_QUALITY), 1.0),
        }
        out["rows"][name] = row
        print(
            f"{name:12s} {row['mp_s']:.0f} MP/s {row['bytes']} B {row['psnr']:.2f} dB  extra alloc {row['extra_alloc']} B "
            f"(strided view {row['extra_alloc_view']} B)  two threads / one twice {row['parallel']['ratio']:.2f}  "
            f"Python progress {row['progress']['ratio']:.2f}",
            flush=True,
        )
    out["control"] = {"parallel": parallel_ratio(big.tobytes, repeats), "progress": python_progress(big.tobytes, 1.0)}
    print(
        f"control (numpy tobytes): {out['control']['parallel']['ratio']:.2f}  progress {out['control']['progress']['ratio']:.2f}",
        flush=True,
    )
    out["mib"] = big.nbytes / (1 << 20)
    return out


# --- part 4: what the pixmap cache and COPY_BITS save (placeholder) --------------------------------
DEMO_FPS = 20


def _demo_minute(cache: bool, copies: bool, seconds: int) -> dict[str, int]:
    """The demo for `seconds` of its own time (a Clock), with a scripted user: the window
    dragged to and fro every 6 s, the pointer across the dock every 4 s. One LZ4 client,
    spice-gtk's cache budget (or none); without `copies`, a move is sent as the pixels of
    its destination (what COPY_BITS saves). Returns the bytes it received, by kind."""
    from support.inprocess import Reader, make_server, open_display
    from twisted.internet.task import Clock

    from spice_twisted.inputs import InputOrigin
    from spice_twisted.render.rect import Rect
    from spice_twisted.sources.demo import DemoSource
    from spice_twisted.wire.enums import DisplayCap, MsgDisplay

    clock = Clock()
    src = DemoSource(fps=DEMO_FPS, clock=clock)
    srv = make_server(src, clock=clock)
    render = srv.render
    if not copies:

        def as_pixels(area: Rect, x: int, y: int, _move=render.copy_bits) -> None:
            render.sinks, sinks = [], render.sinks  # the move happens, no pipe hears of it...
            try:
                _move(area, x, y)
            finally:
                render.sinks = sinks
            render.damage(Rect(x, y, x + area.width, y + area.height))  # ...its pixels go instead

        render.copy_bits = as_pixels  # type: ignore[method-assign]
    r = Reader(*open_display(srv, {DisplayCap.LZ4_COMPRESSION}, cache_px=20_971_520 if cache else 0))
    r.catch_up(srv)
    who = InputOrigin(1, (255, 0, 0))
    start = r.bytes
    steps = seconds * DEMO_FPS
    for i in range(steps):
        t = i % (6 * DEMO_FPS)
        if t == 0:  # grab the title bar
            x0, y0 = src.window.x + 100, src.window.y + 10
            src.button(who, 1, True, x0, y0, 1)
        elif t < 2 * DEMO_FPS:  # drag for 2 s, right then back
            dx = 6 * t if (i // (6 * DEMO_FPS)) % 2 == 0 else -6 * t
            src.pointer(who, x0 + dx, y0 + t, 1)
        elif t == 2 * DEMO_FPS:
            src.button(who, 1, False, x0 + dx, y0 + t, 0)
        u = i % (4 * DEMO_FPS)
        if u < 2 * DEMO_FPS and t > 2 * DEMO_FPS:  # along the dock, when not dragging
            src.pointer(who, 640 + 9 * u, 108, 0)
        clock.advance(1 / DEMO_FPS)
        r.catch_up(srv)
    kinds = [m for m, _ in r.messages]
    return {
        "bytes": r.bytes - start,
        "copies": kinds.count(MsgDisplay.COPY_BITS),
        "hits": r.screen.cache_hits,
        "draws": kinds.count(MsgDisplay.DRAW_COPY),
    }


def demo_savings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The bytes the pixmap cache and COPY_BITS save on the demo over a minute: the same
    scripted minute with both, without each, without either."""
    seconds = 20 if args.quick else 60
    runs = {}
    for name, cache, copies in (("both", True, True), ("no cache", False, True), ("no COPY_BITS", True, False), ("neither", False, False)):
        runs[name] = _demo_minute(cache, copies, seconds)
        print(f"demo {seconds} s, {name}: {runs[name]}")
    return {"seconds": seconds, "runs": runs}


def demo_savings_lines(result: dict[str, Any] | None) -> list[str]:
    """The report's lines for `demo_savings`."""
    if result is None:
        return ["Not measured."]
    runs, sec = result["runs"], result["seconds"]
    base = runs["neither"]["bytes"]
    rows = [
        [name, f"{v['bytes'] / 2**20:.2f} MiB", f"{v['bytes'] / base:.2f}", f"{v['draws']:,}", f"{v['hits']:,}", f"{v['copies']:,}"]
        for name, v in runs.items()
    ]
    return [
        f"The demo over {sec} s of its own time (in-process, a fake clock, {DEMO_FPS} fps): the ball, the clock, "
        "the log line a second, the slideshow every 0.5 s, the window dragged for 2 s every 6 s and the pointer "
        "along the dock every 4 s; one LZ4 client with spice-gtk's cache budget. Wire bytes to the client:",
        "",
        md_table(["pixmap cache / COPY_BITS", "bytes", "of neither", "DRAW_COPY", "FROM_CACHE", "COPY_BITS"], rows),
    ]


# --- output -------------------------------------------------------------------------------------------
# --- part 5: LZ against LZ4, GLZ on sequences ------------------------------------------------------
def _scrolling_text(h: int, w: int, frames: int, step: int) -> list[np.ndarray]:
    """A text window scrolled by `step` rows a frame: each frame is the whole window again."""
    page = images.text_ui(h + frames * step, w)
    return [np.ascontiguousarray(page[i * step : i * step + h]) for i in range(frames)]


def _moving_window(frames: int) -> list[np.ndarray]:
    """A 320x240 window dragged across a desktop: each frame the area it covers now (the
    window, at a new place, over the background around it)."""
    desk = images.mostly_flat(768, 1024)
    win = images.text_ui(240, 320, seed=7)
    out = []
    for i in range(frames):
        x, y = 40 + 23 * i, 30 + 11 * i
        frame = np.array(desk[y - 8 : y + 248, x - 8 : x + 328])
        frame[8:248, 8:328] = win
        out.append(frame)
    return out


def lz_glz(quick: bool) -> dict[str, Any]:
    """LZ and LZ4 on every kind; GLZ, LZ and LZ4 per frame of two sequences."""
    kinds = []
    for kind, make in images.KINDS.items():
        px = make(768, 1024)
        mp = px.shape[0] * px.shape[1] / 1e6
        row: dict[str, Any] = {"kind": kind}
        for name, enc in (("lz", lz.encode), ("lz4", lz4.encode)):
            payload = enc(px)
            row[name] = {
                "kib_mp": payload.nbytes / mp / 1024,
                "mp_s": mp / fastest(lambda e=enc, p=px: e(p), budget=0.05 if quick else 0.2),
            }
        assert np.array_equal(decode_lz(lz.encode(px).fields["data"].buf)[..., :3], px[..., :3])
        kinds.append(row)
        print(
            f"{kind:13s} lz {row['lz']['kib_mp']:.0f} KiB/MP {row['lz']['mp_s']:.0f} MP/s  lz4 {row['lz4']['kib_mp']:.0f} KiB/MP {row['lz4']['mp_s']:.0f} MP/s",
            flush=True,
        )
    seqs = []
    for name, frames in (
        ("scrolling text 800x600, 16 rows a frame", _scrolling_text(600, 800, 12, 16)),
        ("moving window 336x256", _moving_window(12)),
    ):
        enc, window = glz.GlzEncoder(), GlzWindow()
        totals = {"glz": 0, "zlib_glz": 0, "lz": 0, "lz4": 0}
        pixels, t_glz, t_lz = 0, 0.0, 0.0
        for i, px in enumerate(frames):
            t = time.perf_counter()
            p = enc.encode(px, i)
            t_glz += time.perf_counter() - t
            _, got = window.decode(p.fields["data"].buf)
            assert np.array_equal(got[..., :3], px[..., :3])
            z = glz.zlib_glz(p)
            t = time.perf_counter()
            lzp = lz.encode(px)
            t_lz += time.perf_counter() - t
            if i == 0:
                continue  # the first frame has nothing earlier to reference
            pixels += px.shape[0] * px.shape[1]
            totals["glz"] += p.nbytes
            totals["zlib_glz"] += (z or p).nbytes
            totals["lz"] += lzp.nbytes
            totals["lz4"] += lz4.encode(px).nbytes
        n_px = sum(f.shape[0] * f.shape[1] for f in frames) / 1e6
        seqs.append({"name": name, "per_px": {k: v / pixels for k, v in totals.items()}, "glz_mp_s": n_px / t_glz, "lz_mp_s": n_px / t_lz})
        print(f"{name}: bytes per pixel changed " + "  ".join(f"{k} {v:.3f}" for k, v in seqs[-1]["per_px"].items()), flush=True)
    return {"kinds": kinds, "seqs": seqs}


def lz_glz_section(r: dict[str, Any], load: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    return "\n".join(
        [
            "<!-- lz-glz:begin -->",
            f"Measured by `{command_line()}` on {now:%Y-%m-%d %H:%M} UTC, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), "
            f"shared with other work (load average {load}); one thread, the fastest of repeats. 1024x768 images of each kind:",
            "",
            md_table(
                ["content", "lz KiB/MP", "lz4 KiB/MP", "lz MP/s", "lz4 MP/s"],
                [
                    [
                        KIND_NAMES[k["kind"]],
                        f"{k['lz']['kib_mp']:,.0f}",
                        f"{k['lz4']['kib_mp']:,.0f}",
                        f"{k['lz']['mp_s']:,.0f}",
                        f"{k['lz4']['mp_s']:,.0f}",
                    ]
                    for k in r["kinds"]
                ],
            ),
            "",
            "GLZ (one dictionary, every frame an image of its own) on sequences that repeat earlier content, in bytes per "
            "pixel changed after the first frame (each frame is a whole image: the scrolled window, the moved window with "
            "the background around it); ZLIB-GLZ at zlib level 1 (plain GLZ where deflate saves nothing):",
            "",
            md_table(
                ["sequence", "glz B/px", "zlib-glz B/px", "lz B/px", "lz4 B/px", "glz MP/s", "lz MP/s"],
                [
                    [
                        s["name"],
                        *(f"{s['per_px'][k]:.3f}" for k in ("glz", "zlib_glz", "lz", "lz4")),
                        f"{s['glz_mp_s']:,.0f}",
                        f"{s['lz_mp_s']:,.0f}",
                    ]
                    for s in r["seqs"]
                ],
            ),
            "<!-- lz-glz:end -->",
        ]
    )


def _terminal(h: int, w: int, colours: int) -> np.ndarray:
    """A terminal-like picture: lines of text drawn without anti-aliasing (as an xterm with
    a bitmap font draws them) in up to `colours` - 1 colours on one background."""
    from PIL import ImageDraw

    rng = np.random.default_rng(colours)
    img = Image.new("RGB", (w, h), (255, 255, 255) if colours == 2 else (0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # no anti-aliasing: the picture keeps its few colours
    inks = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(colours - 1)] if colours > 2 else [(0, 0, 0)]
    words = "ls -la /usr/lib total drwxr-xr-x root 4096 Dec 7 10:11 python3.11 make: Entering directory".split()
    for y in range(2, h - 12, 13):
        x = 2
        while x < w - 60:
            word = words[int(rng.integers(0, len(words)))]
            draw.text((x, y), word, fill=inks[int(rng.integers(0, len(inks)))])
            x += 7 * len(word) + 7
    rgb = np.asarray(img)
    out = np.zeros((h, w, 4), np.uint8)
    out[..., :3] = rgb[..., ::-1]
    return out


def lz_plt(frames_dir: str | None, quick: bool = False) -> list[dict[str, Any]]:
    """LZ_PLT against LZ_RGB32, both encoded by our C encoder: what a spice-gtk client gets
    under `lz` (the `lz_plt` codec: LZ_PLT1_BE/PLT4_BE where a picture has at most 16
    colours, else LZ_RGB32) against what every other client gets (`lz`), in bytes per
    megapixel and encode megapixels per second (one thread, the fastest of repeats), on
    generated pictures and, with `--frames DIR`, on the Xvfb pictures benchmarks/glz_x11.py
    --dump saved. Every LZ_PLT image is checked exact through tests/support/lz_decode.py."""
    sets: list[tuple[str, list[np.ndarray]]] = [
        ("terminal text, 2 colours 1024x768", [_terminal(768, 1024, 2)]),
        ("terminal text, 8 colours 1024x768", [_terminal(768, 1024, 8)]),
    ]
    sets += [(f"{KIND_NAMES[k]} 1024x768", [images.KINDS[k](768, 1024)]) for k in ("text_ui", "mostly_flat", "photo")]
    if frames_dir:
        for d in sorted(Path(frames_dir).iterdir()):
            if d.is_dir() and d.name.endswith("-1") and not d.name.startswith("photos"):
                sets.append((f"Xvfb {d.name}", [np.ascontiguousarray(np.load(f)) for f in sorted(d.glob("*.npy"))]))
    out = []
    for name, pics in sets:
        tot = {"rgb32": 0, "plt": 0, "fits": 0, "t_rgb32": 0.0, "t_plt": 0.0, "mp": 0.0}
        for px in pics:
            rgb = lz.encode(px)
            plt = lz.encode_plt(px)
            if plt.image_type == ImageType.LZ_PLT:
                tot["fits"] += 1
                body = plt.fields["lz_plt"]
                data = body["data"].buf
                stream, pal = data[: body["data_size"]], data[body["data_size"] + 10 :]  # after the palette's unique and num_ents
                assert np.array_equal(decode_lz_plt(stream, pal)[..., :3], px[..., :3]), name
            tot["rgb32"] += rgb.nbytes
            tot["plt"] += plt.nbytes
            tot["mp"] += px.shape[0] * px.shape[1] / 1e6
            budget = 0.02 if quick else 0.1
            tot["t_rgb32"] += fastest(lambda p=px: lz.encode(p), budget=budget, min_reps=3)
            tot["t_plt"] += fastest(lambda p=px: lz.encode_plt(p), budget=budget, min_reps=3)
        out.append({"name": name, "pictures": len(pics), **tot})
        print(
            f"{name}: {tot['fits']}/{len(pics)} of <= 16 colours; LZ_RGB32 {tot['rgb32'] / tot['mp'] / 1024:.1f} KiB/MP, "
            f"with LZ_PLT {tot['plt'] / tot['mp'] / 1024:.1f} KiB/MP ({tot['plt'] / tot['rgb32']:.3f}x); "
            f"{tot['mp'] / tot['t_rgb32']:.0f} / {tot['mp'] / tot['t_plt']:.0f} MP/s",
            flush=True,
        )
    return out


def lz_plt_section(rows: list[dict[str, Any]], load: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    return "\n".join(
        [
            "<!-- lz-plt:begin -->",
            md_table(
                ["pictures", "of <= 16 colours", "LZ_RGB32 KiB/MP", "with LZ_PLT KiB/MP", "ratio", "LZ_RGB32 MP/s", "with LZ_PLT MP/s"],
                [
                    [
                        r["name"],
                        f"{r['fits']} of {r['pictures']}",
                        f"{r['rgb32'] / r['mp'] / 1024:,.1f}",
                        f"{r['plt'] / r['mp'] / 1024:,.1f}",
                        f"{r['plt'] / r['rgb32']:.3f}",
                        f"{r['mp'] / r['t_rgb32']:,.0f}",
                        f"{r['mp'] / r['t_plt']:,.0f}",
                    ]
                    for r in rows
                ],
            ),
            "",
            f"Measured by `{command_line()}` on {now:%Y-%m-%d %H:%M} UTC, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), "
            f"shared with other work (load average {load}); bytes are the image's payload after its descriptor (LZ_PLT's "
            'palette included); one thread, the fastest of repeats. "with LZ_PLT" is the `lz_plt` codec (LZ_PLT where a '
            "picture has <= 16 colours, else LZ_RGB32, the colour count included). The Xvfb pictures are those "
            "benchmarks/glz_x11.py --dump saved (docs/performance.md).",
            "<!-- lz-plt:end -->",
        ]
    )


def fmt_psnr(v: dict[str, Any]) -> str:
    return "exact" if v["exact"] else f"{v['psnr']:.1f}"


def perf_section(rows: list[dict[str, Any]], sz: dict[str, Any], b: dict[str, Any], savings: Any, load: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    names = [n for n, _ in codec_list()]
    bytes_rows, speed_rows = [], []
    for r in rows:
        label = [f"{KIND_NAMES[r['kind']]}", f"{r['w']}x{r['h']}"]
        bytes_rows.append(
            label
            + [f"{r['codecs'][n]['bytes_per_mp'] / 1024:,.0f}" for n in names]
            + [fmt_psnr(r["codecs"][n]) for n in names if n.startswith("jpeg")]
            + ["yes" if r["pays"] else "no", f"{r['graduality']:+.3f}", f"{r['classify_us']:.0f}"]
        )
        speed_rows.append(label + [f"{r['codecs'][n]['mp_s']:,.0f}" for n in names])
    h = sz["handoff"]
    size_rows = [
        [
            f"{s['side']}x{s['side']}",
            str(s["side"] ** 2),
            f"{s['jpeg_us']:.1f}",
            f"{s['lz4_us']:.1f}",
            f"{s['quic_us']:.1f}",
            f"{s['classify_us']:.1f}",
        ]
        for s in sz["rows"]
    ]
    jpeg_names = [n for n in names if n.startswith("jpeg")]
    lines = [
        "<!-- codecs:begin -->",
        "## Codecs: bytes, quality and speed by content",
        "",
        "Every codec on generated images of each kind (tests/support/images.py; benchmarks/codecs.py): bytes per "
        "megapixel on the wire (the image's payload after its 18-byte descriptor; raw is 4 MiB per megapixel), PSNR of "
        "JPEG decoded by Pillow (over B, G, R), and encode speed on one thread (the fastest of repeats, the least disturbed by other work; in megapixels per "
        f"second). `lossy_pays` is codecs/classify.py's verdict (graduality below {classify.PHOTO_SCORE}, at least "
        f"{classify.MIN_PIXELS} pixels and {classify.MIN_SIDE} a side); its cost is per call. JPEG quality "
        f"{jpeg.DEFAULT_QUALITY} is the default (`--jpeg-quality`). glz and zlib-glz here encode each image alone, "
        "referencing no earlier image (a client's first image; ZLIB-GLZ at zlib level 1, plain GLZ where deflate saves "
        'nothing); what GLZ gains on content that repeats earlier images is in docs/codecs.md and in "GLZ on X11 '
        'workloads" below. Why each codec and when it is sent: docs/codecs.md.',
        "",
        f"- Date: {now:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()}; "
        f"shared with other work (load average {load} at the start)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, {b['versions']['simplejpeg']}, {b['versions']['pillow']} (the decoder)",
        f"- Command: `{command_line()}`",
        "",
        "### Bytes per megapixel (KiB), JPEG PSNR (dB), the classifier",
        "",
        md_table(
            [
                "content",
                "size",
                *[f"{n} KiB/MP" for n in names],
                *[f"{n} dB" for n in jpeg_names],
                "lossy_pays",
                "graduality",
                "classify µs",
            ],
            bytes_rows,
        ),
        "",
        "### Encode speed (megapixels per second, one thread)",
        "",
        md_table(["content", "size", *[f"{n} MP/s" for n in names]], speed_rows),
        "",
        "### Encodes by size: the inline thresholds",
        "",
        f"A no-op hand-off to a `ThreadPool(1, 2)` like the codec pool's cost the reactor {h['reactor_cpu_us']:.1f} us of CPU "
        f"(and {h['worker_cpu_us']:.1f} us of Python on the pool's thread) in this run; `jpeg.INLINE_PIXELS` is "
        f"{jpeg.INLINE_PIXELS} pixels, `quic.INLINE_PIXELS` {quic.INLINE_PIXELS}. Encodes of the generated photo, and the classifier on it:",
        "",
        md_table(["size", "pixels", "jpeg q85 µs", "lz4 µs", "quic µs", "lossy_pays µs"], size_rows),
        "",
        f"QUIC and the GIL ({sz['quic_gil']['mib']:.0f} MiB photo): two threads encoding at once took "
        f"{sz['quic_gil']['ratio']:.2f} of one thread encoding twice (0.5 = parallel, 1.0 = serialised), and a Python loop "
        f"kept {sz['quic_gil']['progress']:.2f} of its speed during the calls (0 = the call holds the GIL).",
        "",
        "### The JPEG bindings",
        "",
        f"The table is in docs/codecs.md (the choice and why); the GIL checks use a {b['mib']:.0f} MiB image.",
        "",
        "### Pixmap cache and COPY_BITS on the demo (bytes saved over a minute)",
        "",
        *demo_savings_lines(savings),
        "<!-- codecs:end -->",
    ]
    return "\n".join(lines)


def bindings_section(b: dict[str, Any]) -> str:
    rows = []
    for name, r in b["rows"].items():
        rows.append(
            [
                b["versions"].get(name, name),
                f"{r['mp_s']:.0f}",
                f"{r['bytes']:,}",
                f"{r['psnr']:.2f}",
                f"{r['extra_alloc'] / 1024:,.0f}",
                f"{r['extra_alloc_view'] / 1024:,.0f}",
                f"{r['parallel']['ratio']:.2f}",
                f"{r['progress']['ratio']:.2f}",
            ]
        )
    c = b["control"]
    rows.append(
        ["control: numpy `tobytes` (holds the GIL)", "", "", "", "", "", f"{c['parallel']['ratio']:.2f}", f"{c['progress']['ratio']:.2f}"]
    )
    now = datetime.datetime.now(datetime.UTC)
    return "\n".join(
        [
            "<!-- jpeg-bindings:begin -->",
            md_table(
                [
                    "binding",
                    "encode MP/s (1024x768 photo, q85, 4:2:0)",
                    "bytes",
                    "PSNR dB",
                    "extra KiB allocated (contiguous input)",
                    "extra KiB (strided crop)",
                    "two threads / one twice",
                    "Python progress during the calls",
                ],
                rows,
            ),
            "",
            f"Measured by `{command_line()}` on {now:%Y-%m-%d}, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), "
            f"shared with other work. Extra allocation: what one call allocates beyond its output (tracemalloc; a copy of "
            f"the 3 MiB input would show as ~3,072 KiB; Pillow's own image memory is not traced). Two threads / one twice: "
            f"the wall time of two threads encoding a {b['mib']:.0f} MiB image at once over one thread encoding it twice "
            "(0.5 = parallel; 1.0 = serialised; the other work on the 2 cores pushes it up). Python progress: how far a "
            "pure-Python loop gets during another thread's calls, relative to its speed alone (0 = the call holds the GIL).",
            "<!-- jpeg-bindings:end -->",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write the docs")
    p.add_argument("--lz-only", action="store_true", help="only LZ against LZ4 and GLZ on sequences (docs/codecs.md)")
    p.add_argument("--plt", action="store_true", help="only LZ_PLT against LZ_RGB32 (docs/codecs.md)")
    p.add_argument("--frames", help="with --plt: the pictures benchmarks/glz_x11.py --dump saved")
    args = p.parse_args()
    load = load_average()
    if args.plt:
        pr = lz_plt(args.frames, args.quick)
        if not args.no_write:
            write_between(CODECS_DOC, "lz-plt", lz_plt_section(pr, load))
            write_between(PERF_DOC, "lz-plt", lz_plt_section(pr, load))
            print(f"wrote {CODECS_DOC.relative_to(ROOT)} and {PERF_DOC.relative_to(ROOT)}")
        return
    if args.lz_only:
        r = lz_glz(args.quick)
        if not args.no_write:
            write_between(CODECS_DOC, "lz-glz", lz_glz_section(r, load))
            print(f"wrote {CODECS_DOC.relative_to(ROOT)}")
        return

    async def run(reactor: Any) -> None:
        rows = content(args.quick)
        sz = await sizes(reactor, args.quick)
        b = compare_bindings(args.quick)
        savings = demo_savings(args)
        lzr = lz_glz(args.quick)
        if not args.no_write:
            write_between(PERF_DOC, "codecs", perf_section(rows, sz, b, savings, load))
            write_between(CODECS_DOC, "jpeg-bindings", bindings_section(b))
            write_between(CODECS_DOC, "lz-glz", lz_glz_section(lzr, load))
            print(f"wrote {PERF_DOC.relative_to(ROOT)} and {CODECS_DOC.relative_to(ROOT)}")

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)), [])


if __name__ == "__main__":
    main()
