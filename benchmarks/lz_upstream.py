"""Our LZ and GLZ encoders against upstream's: bytes and CPU per megapixel on the same pictures.

Upstream's LZ encoder is spice-common's `common/lz.c`; its GLZ encoder is spice-server's
`server/glz-encoder*.c` (what spice-server uses, one dictionary per client). Give this
script a spice-common checkout and a spice(-server) checkout; it copies those source files
into a temporary folder, compiles them with the system compiler (-O3, like our extension)
against a few stub headers of its own in place of glib and spice-protocol, and loads the
result with ctypes. Nothing of upstream enters this repository; the build lives only for
the run.

The pictures:
- generated 1024x768 images of every kind (tests/support/images.py), each alone;
- the generated sequences of benchmarks/codecs.py (a scrolling text window, a window moved
  across a desktop): GLZ with one dictionary over the sequence (upstream: a dictionary of
  spice-gtk's default 4 Mpixel window, ours the same);
- with `--frames DIR`, the pictures the server really encoded on an Xvfb workload, saved by
  `benchmarks/glz_x11.py --dump DIR` (one folder per run: `scroll-glz-1`, `move-glz-1`, ...).

Every upstream output is decoded by our test decoder (tests/support/lz_decode.py, GLZ
through one window per sequence) and must equal the picture: that checks the harness, and
that both encoders write the format spice-gtk reads. Bytes are the LZ/GLZ data (the
image's payload without its 4-byte length). Speed: thread CPU time per megapixel, the best
of --passes passes over each picture or sequence (fresh dictionaries each pass), one thread.

Writes the table in docs/codecs.md between <!-- lz-upstream:begin --> and
<!-- lz-upstream:end -->.

    .venv/bin/python benchmarks/lz_upstream.py --spice-common PATH --spice PATH [--frames DIR] [--quick] [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import argparse  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, cpu_model, load_average, md_table, write_between  # noqa: E402
from support import images  # noqa: E402
from support.lz_decode import GlzWindow, decode_lz  # noqa: E402

from spice_twisted.codecs import glz, lz  # noqa: E402

CODECS_DOC = ROOT / "docs" / "codecs.md"
COMMON_SOURCES = ("lz.c", "lz.h", "lz_common.h", "lz_config.h", "lz_compress_tmpl.c", "lz_decompress_tmpl.c")
SERVER_SOURCES = (
    "glz-encoder.c",
    "glz-encoder.h",
    "glz-encoder-priv.h",
    "glz-encoder-dict.c",
    "glz-encoder-dict.h",
    "glz-encode.tmpl.c",
    "glz-encode-match.tmpl.c",
)

# Stand-ins for glib, spice-protocol and the headers around the encoders.
MACROS = """#include <assert.h>
#include <stdint.h>
#include <stdbool.h>
#define SPICE_BEGIN_DECLS
#define SPICE_END_DECLS
#define SPICE_GNUC_UNUSED __attribute__((unused))
#define SPICE_GNUC_NORETURN __attribute__((noreturn))
#define SPICE_GNUC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define SPICE_ATTR_PACKED __attribute__((packed))
#define SPICE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SPICE_LIKELY(x) __builtin_expect(!!(x), 1)
#define SPICE_VERIFY(x) _Static_assert(x, #x)
#define G_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define G_LIKELY(x) __builtin_expect(!!(x), 1)
#define TRUE 1
#define FALSE 0
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define spice_assert(x) assert(x)
#define spice_extra_assert(x)
#define spice_return_if_fail(x) do { if (!(x)) return; } while (0)
#define spice_return_val_if_fail(x, v) do { if (!(x)) return (v); } while (0)
"""
STUBS = {
    "config.h": "#include <stdint.h>\n#include <stdlib.h>\n#include <stddef.h>\n#include <string.h>\n#include <stdbool.h>\n",
    "spice/types.h": "#include <stdint.h>\n",
    "spice/macros.h": MACROS,
    "spice/start-packed.h": "",
    "spice/end-packed.h": "",
    "glib.h": "#include <spice/macros.h>\n",
    "red-common.h": "#include <spice/macros.h>\n#include <stdlib.h>\n",
    "common/verify.h": "#include <spice/macros.h>\n#define verify(x)\n",
    "common/macros.h": "#include <spice/macros.h>\n",
    "common/draw.h": "#include <spice/macros.h>\ntypedef struct SpicePalette { uint64_t unique; uint16_t num_ents; uint32_t ents[0]; } SpicePalette;\n",
    "harness.c": """#include "config.h"
#include <stdio.h>
#include "common/lz.h"
#include "glz-encoder.h"
static void fail(void *u, const char *f, ...) { fprintf(stderr, "upstream lz: %s\\n", f); abort(); }
static void quiet(void *u, const char *f, ...) {}
static void *alloc(void *u, int n) { return malloc(n); }
static void release(void *u, void *p) { free(p); }
static int no_space(void *u, uint8_t **io) { return 0; }
static int no_lines(void *u, uint8_t **l) { return 0; }
static void no_free_image(void *u, void *img) {}
static LzUsrContext lzusr = { (void *)fail, (void *)quiet, (void *)quiet, (void *)alloc, (void *)release,
                              (void *)no_space, (void *)no_lines };
static GlzEncoderUsrContext glzusr = { (void *)fail, (void *)quiet, (void *)quiet, (void *)alloc, (void *)release,
                                       (void *)no_lines, (void *)no_space, (void *)no_free_image };
static LzContext *lz;
int upstream_lz(int w, int h, uint8_t *px, int stride, uint8_t *out, int n)
{
    if (!lz) lz = lz_create(&lzusr);
    return lz_encode(lz, LZ_IMAGE_TYPE_RGB32, w, h, 1, px, h, stride, out, n);
}
typedef struct { GlzEncDictContext *dict; GlzEncoderContext *enc; } Glz;
void *upstream_glz_new(uint32_t window_pixels)
{
    Glz *g = malloc(sizeof(Glz));
    g->dict = glz_enc_dictionary_create(window_pixels, 1, &glzusr);
    g->enc = glz_encoder_create(0, g->dict, &glzusr);
    return g;
}
void upstream_glz_free(void *p)
{
    Glz *g = p;
    glz_encoder_destroy(g->enc);
    glz_enc_dictionary_destroy(g->dict, &glzusr);
    free(g);
}
int upstream_glz(void *p, int w, int h, uint8_t *px, int stride, uint8_t *out, int n)
{
    GlzEncDictImageContext *ctx;
    return glz_encode(((Glz *)p)->enc, LZ_IMAGE_TYPE_RGB32, w, h, 1, px, h, stride, out, n, NULL, &ctx);
}
""",
}


class Upstream:
    """Upstream's LZ and GLZ encoders, compiled for this run."""

    def __init__(self, common: Path, server: Path, tmp: Path) -> None:
        (tmp / "common").mkdir()
        for name in COMMON_SOURCES:
            shutil.copy(common / "common" / name, tmp / "common" / name)
        for name in SERVER_SOURCES:
            shutil.copy(server / "server" / name, tmp / name)
        for name, text in STUBS.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
        lib = tmp / "libupstream_lz.so"
        srcs = [tmp / "harness.c", tmp / "common" / "lz.c", tmp / "glz-encoder.c", tmp / "glz-encoder-dict.c"]
        cmd = ["cc", "-O3", "-fPIC", "-shared", "-w", f"-I{tmp}", f"-I{tmp / 'common'}", "-o", str(lib), *map(str, srcs), "-lpthread"]
        subprocess.run(cmd, check=True)
        so = self.so = ctypes.CDLL(str(lib))
        enc_args = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        so.upstream_lz.argtypes = enc_args
        so.upstream_glz_new.restype = ctypes.c_void_p
        so.upstream_glz_new.argtypes = [ctypes.c_uint32]
        so.upstream_glz_free.argtypes = [ctypes.c_void_p]
        so.upstream_glz.argtypes = [ctypes.c_void_p, *enc_args]
        self.out = np.zeros(1, np.uint8)

    def _buf(self, px: np.ndarray) -> np.ndarray:
        n = px.shape[0] * px.shape[1] * 5 + 4096
        if len(self.out) < n:
            self.out = np.zeros(n, np.uint8)
        return self.out

    def lz(self, px: np.ndarray) -> bytes:
        h, w = px.shape[:2]
        out = self._buf(px)
        n = self.so.upstream_lz(w, h, px.ctypes.data, w * 4, out.ctypes.data, len(out))
        return out[:n].tobytes()

    def glz_sequence(self, frames: list[np.ndarray], window: int) -> list[bytes]:
        """One dictionary over `frames` (they stay alive: upstream's window points into them)."""
        g = self.so.upstream_glz_new(window)
        try:
            res = []
            for px in frames:
                h, w = px.shape[:2]
                out = self._buf(px)
                n = self.so.upstream_glz(g, w, h, px.ctypes.data, w * 4, out.ctypes.data, len(out))
                res.append(out[:n].tobytes())
            return res
        finally:
            self.so.upstream_glz_free(g)


def ours_glz_sequence(frames: list[np.ndarray], window: int) -> list[bytes]:
    enc = glz.GlzEncoder(window)
    return [bytes(enc.encode(px, i, 0).fields["data"].buf) for i, px in enumerate(frames)]


def best_cpu(fn: Callable[[], Any], passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    return best


def check_glz(frames: list[np.ndarray], datas: list[bytes], who: str) -> None:
    win = GlzWindow()
    for px, data in zip(frames, datas, strict=True):
        _, got = win.decode(data)
        if not np.array_equal(got[..., :3], px[..., :3]):
            raise SystemExit(f"{who}'s GLZ did not decode to the picture")


def sequences(args: argparse.Namespace) -> dict[str, list[np.ndarray]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_codecs", ROOT / "benchmarks" / "codecs.py")  # not the stdlib's codecs
    assert spec is not None and spec.loader is not None
    bench_codecs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_codecs)

    out = {
        "generated: scrolling text 800x600": bench_codecs._scrolling_text(600, 800, 12, 16),
        "generated: moving window 336x256": bench_codecs._moving_window(12),
    }
    for d in sorted(Path(args.frames).iterdir()) if args.frames else ():
        files = sorted(d.glob("*.npy"))
        if files:
            frames = [np.ascontiguousarray(np.load(f)) for f in files[: 40 if args.quick else None]]
            out[f"Xvfb {d.name}: {len(frames)} pictures"] = frames
    return {k: [np.ascontiguousarray(f) for f in v] for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spice-common", type=Path, required=True, help="a spice-common checkout (common/lz.c)")
    p.add_argument("--spice", type=Path, required=True, help="a spice (server) checkout (server/glz-encoder*.c)")
    p.add_argument("--frames", type=Path, help="folders of pictures saved by benchmarks/glz_x11.py --dump")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 passes, at most 40 pictures per saved sequence")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/codecs.md")
    args = p.parse_args()
    if args.quick:
        args.passes = 2
    load = load_average()
    window = glz.DEFAULT_WINDOW_PIXELS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        up = Upstream(args.spice_common, args.spice, Path(tmp))
        for kind, make in images.KINDS.items():
            px = np.ascontiguousarray(make(768, 1024))
            mp = px.shape[0] * px.shape[1] / 1e6
            theirs = up.lz(px)
            if not np.array_equal(decode_lz(theirs)[..., :3], px[..., :3]):
                raise SystemExit(f"upstream's LZ did not decode to the {kind} picture")
            ours = bytes(lz.encode(px).fields["data"].buf)
            row = {
                "what": f"{images_name(kind)} 1024x768, alone",
                "codec": "LZ",
                "ours_bpx": len(ours) / mp / 1e6,
                "up_bpx": len(theirs) / mp / 1e6,
                "ours_ms": 1000 * best_cpu(lambda px=px: lz.encode(px), args.passes + 2) / mp,
                "up_ms": 1000 * best_cpu(lambda px=px: up.lz(px), args.passes + 2) / mp,
            }
            rows.append(row)
            show(row)
        for name, frames in sequences(args).items():
            mp = sum(f.shape[0] * f.shape[1] for f in frames) / 1e6
            theirs_g = up.glz_sequence(frames, window)
            check_glz(frames, theirs_g, "upstream")
            ours_g = ours_glz_sequence(frames, window)
            check_glz(frames, ours_g, "our")
            for codec, ours_n, up_n, ours_fn, up_fn in (
                (
                    "GLZ",
                    sum(map(len, ours_g)),
                    sum(map(len, theirs_g)),
                    lambda f=frames: ours_glz_sequence(f, window),
                    lambda f=frames: up.glz_sequence(f, window),
                ),
                (
                    "LZ",
                    sum(lz.encode(f).nbytes - 4 for f in frames),
                    sum(len(up.lz(f)) for f in frames),
                    lambda f=frames: [lz.encode(x) for x in f],
                    lambda f=frames: [up.lz(x) for x in f],
                ),
            ):
                row = {
                    "what": name,
                    "codec": codec,
                    "ours_bpx": ours_n / mp / 1e6,
                    "up_bpx": up_n / mp / 1e6,
                    "ours_ms": 1000 * best_cpu(ours_fn, args.passes) / mp,
                    "up_ms": 1000 * best_cpu(up_fn, args.passes) / mp,
                }
                rows.append(row)
                show(row)
    now = datetime.datetime.now(datetime.UTC)
    text = "\n".join(
        [
            "<!-- lz-upstream:begin -->",
            md_table(
                [
                    "pictures",
                    "codec",
                    "ours B/px",
                    "upstream B/px",
                    "bytes ours / upstream",
                    "ours ms/MP",
                    "upstream ms/MP",
                    "CPU ours / upstream",
                ],
                [
                    [
                        r["what"],
                        r["codec"],
                        f"{r['ours_bpx']:.4f}",
                        f"{r['up_bpx']:.4f}",
                        f"{r['ours_bpx'] / r['up_bpx']:.2f}",
                        f"{r['ours_ms']:.2f}",
                        f"{r['up_ms']:.2f}",
                        f"{r['ours_ms'] / r['up_ms']:.2f}",
                    ]
                    for r in rows
                ],
            ),
            "",
            f"Measured by `{command_line()}` on {now:%Y-%m-%d %H:%M} UTC, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}, "
            f"{platform.system()}), shared with other work (load average {load} at the start). Bytes: the LZ/GLZ data per "
            "pixel; GLZ over each sequence with one dictionary of 4 Mpixels (the sequence's bytes after all its pictures, "
            "the first included). CPU: thread time per megapixel, the best of "
            f"{args.passes} passes, one thread; every upstream output decoded to its picture by our test decoder.",
            "<!-- lz-upstream:end -->",
        ]
    )
    if not args.no_write:
        write_between(CODECS_DOC, "lz-upstream", text)
        print(f"wrote {CODECS_DOC.relative_to(ROOT)}")


def images_name(kind: str) -> str:
    return kind.replace("_", " ")


def show(r: dict[str, Any]) -> None:
    print(
        f"{r['what']:45s} {r['codec']:3s} bytes/px ours {r['ours_bpx']:.4f} upstream {r['up_bpx']:.4f} ({r['ours_bpx'] / r['up_bpx']:.2f})  "
        f"ms/MP ours {r['ours_ms']:.2f} upstream {r['up_ms']:.2f} ({r['ours_ms'] / r['up_ms']:.2f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
