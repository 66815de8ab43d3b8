"""What a late joiner of a GLZ generation costs the members already there.

A client that joins a generation late gets its images from its first one on, so from its
join until the window has moved past it, the generation's encodes may not reference the
images before (`min_ref_id` = the newest member's first image): the members there before
it get those images somewhat larger. This measures that, in bytes, two ways:

- sequences (the encoder alone): a scrolling text window and a window dragged across a
  desktop, every frame an image; the bytes of the frames after a join at frame K with
  `min_ref_id` = K against 0;
- the demo in process (a fake clock, a scripted user as in benchmarks/codecs.py): two
  GLZ clients for S seconds, and the same run with a third joining half-way; the wire
  bytes the first client received after the join, and the GLZ encodes made.

Writes the section `glz-join` of docs/performance.md (`--no-write`: print only).

    .venv/bin/python benchmarks/glz_join.py [--quick] [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, load_average, md_table, write_between  # noqa: E402

from spice_twisted.codecs import glz  # noqa: E402

# benchmarks/codecs.py's sequences (its name is the standard library's, so by path)
_spec = importlib.util.spec_from_file_location("codec_bench", ROOT / "benchmarks" / "codecs.py")
assert _spec is not None and _spec.loader is not None
codec_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(codec_bench)

PERF_DOC = ROOT / "docs" / "performance.md"
DEMO_FPS = 20
WINDOW = 4 << 20


def sequence_cost(frames: list[np.ndarray], join: int) -> dict[str, int]:
    """Bytes of frames join.. encoded as the members' images, with and without a joiner at `join`."""
    out = {}
    for name, min_ref in (("alone", 0), ("joined", join)):
        enc = glz.GlzEncoder(WINDOW)
        total = 0
        for i, px in enumerate(frames):
            p = enc.encode(px, i, min_ref if i >= join else 0)
            if i == join:
                out[name + "_first"] = p.nbytes  # the joiner's first image: no reference to older ones
            if i >= join:
                total += p.nbytes
        out[name] = total
    out["frames"] = len(frames) - join
    return out


def demo_cost(seconds: int, joiner: bool) -> dict[str, int]:
    """Two GLZ clients on the demo for `seconds` of its time; with `joiner`, a third joins
    half-way. The bytes the first client received from then on, and the GLZ encodes."""
    from support.inprocess import Reader, make_server, open_display
    from twisted.internet.task import Clock

    from spice_twisted.inputs import InputOrigin
    from spice_twisted.sources.demo import DemoSource
    from spice_twisted.wire.enums import DisplayCap

    gtk = {DisplayCap.LZ4_COMPRESSION, DisplayCap.COMPOSITE, DisplayCap.A8_SURFACE}
    encodes = [0]
    real = glz.GlzEncoder.encode

    def counted(self: glz.GlzEncoder, pixels: np.ndarray, image_id: int, min_ref_id: int = 0) -> Any:
        encodes[0] += 1
        return real(self, pixels, image_id, min_ref_id)

    glz.GlzEncoder.encode = counted  # type: ignore[method-assign]
    try:
        clock = Clock()
        src = DemoSource(fps=DEMO_FPS, clock=clock)
        srv = make_server(src, clock=clock)
        readers = [Reader(*open_display(srv, gtk, cache_px=20_971_520, glz_window=WINDOW)) for _ in range(2)]
        for r in readers:
            r.catch_up(srv)
        who = InputOrigin(1, (255, 0, 0))
        steps = seconds * DEMO_FPS
        start = later = 0
        for i in range(steps):
            if i == 3 * steps // 4:
                later = readers[0].bytes
            if i == steps // 2:
                start = readers[0].bytes
                if joiner:
                    readers.append(Reader(*open_display(srv, gtk, cache_px=20_971_520, glz_window=WINDOW)))
            t = i % (6 * DEMO_FPS)
            if t == 0:  # the window dragged for 2 s every 6 s, as in benchmarks/codecs.py
                x0, y0 = src.window.x + 100, src.window.y + 10
                src.button(who, 1, True, x0, y0, 1)
            elif t < 2 * DEMO_FPS:
                dx = 6 * t if (i // (6 * DEMO_FPS)) % 2 == 0 else -6 * t
                src.pointer(who, x0 + dx, y0 + t, 1)
            elif t == 2 * DEMO_FPS:
                src.button(who, 1, False, x0 + dx, y0 + t, 0)
            clock.advance(1 / DEMO_FPS)
            for r in readers:
                r.catch_up(srv)
        gen = readers[0].cc.glz
        assert gen is not None and all(r.cc.glz is gen for r in readers)
        for r in readers:
            assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
        return {
            "bytes_after": readers[0].bytes - start,
            "bytes_last_quarter": readers[0].bytes - later,
            "encodes": encodes[0],
            "images": gen.images,
            "late_ids": len(readers[2].screen.glz_ids) if joiner else 0,
        }
    finally:
        glz.GlzEncoder.encode = real  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    load = load_average()
    seqs = []
    for name, frames, join in (
        ("scrolling text 800x600, 16 rows a frame", codec_bench._scrolling_text(600, 800, 24, 16), 12),
        ("moving window 336x256", codec_bench._moving_window(24), 12),
    ):
        c = sequence_cost(frames, join)
        seqs.append((name, join, c))
        print(f"{name}, join at frame {join}: {c}", flush=True)
    seconds = 24 if args.quick else 60
    demo = {k: demo_cost(seconds, k == "joined") for k in ("alone", "joined")}
    print(f"demo {seconds} s: {demo}", flush=True)
    now = datetime.datetime.now(datetime.UTC)
    a, j = demo["alone"], demo["joined"]
    text = "\n".join(
        [
            "<!-- glz-join:begin -->",
            f"Measured by `{command_line()}` on {now:%Y-%m-%d %H:%M} UTC (load average {load}). What a client joining a "
            "GLZ generation late costs the members already there: until the window moves past its first image, the "
            "encodes may not reference older images. Sequences (the encoder alone; every frame one image), the bytes "
            "of the frames from the join on:",
            "",
            md_table(
                [
                    "sequence",
                    "join at frame",
                    "frames after",
                    "bytes, nobody joins",
                    "bytes, a joiner",
                    "extra",
                    "of which the first image",
                ],
                [
                    [
                        n,
                        str(k),
                        str(c["frames"]),
                        f"{c['alone']:,}",
                        f"{c['joined']:,}",
                        f"{c['joined'] / c['alone'] - 1:+.1%}",
                        f"{(c['joined_first'] - c['alone_first']) / max(1, c['joined'] - c['alone']):.0%}",
                    ]
                    for n, k, c in seqs
                ],
            ),
            "",
            f"The demo in process ({seconds} s of its time at {DEMO_FPS} fps, the window dragged for 2 s every 6 s): two "
            "spice-gtk-like GLZ clients, with and without a third joining half-way; the wire bytes the first client got "
            "from the join on, and the GLZ encodes for everyone:",
            "",
            md_table(
                [
                    "run",
                    "bytes to client 1 after the join",
                    "of which in the last quarter",
                    "GLZ encodes",
                    "images",
                    "late joiner's GLZ images",
                ],
                [
                    ["two clients", f"{a['bytes_after']:,}", f"{a['bytes_last_quarter']:,}", str(a["encodes"]), str(a["images"]), "-"],
                    [
                        "a third joins half-way",
                        f"{j['bytes_after']:,}",
                        f"{j['bytes_last_quarter']:,}",
                        str(j["encodes"]),
                        str(j["images"]),
                        str(j["late_ids"]),
                    ],
                ],
            ),
            "",
            f"Extra bytes for the members there before: {j['bytes_after'] - a['bytes_after']:+,} "
            f"({j['bytes_after'] / a['bytes_after'] - 1:+.1%}) over the half after the join, "
            f"{j['bytes_last_quarter'] / a['bytes_last_quarter'] - 1:+.1%} in its last quarter: a one-off, about one "
            "copy of the content the members' window would have referenced (on the sequences, exactly the joiner's "
            "first image, sent without references). The joiner costs no encode (one per image for all); its own "
            "bytes are what a generation of its own would have sent it.",
            "<!-- glz-join:end -->",
        ]
    )
    if not args.no_write:
        write_between(PERF_DOC, "glz-join", text)
        print(f"wrote {PERF_DOC.relative_to(ROOT)}")
    else:
        print(text)


if __name__ == "__main__":
    main()
