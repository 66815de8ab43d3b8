"""Our QUIC encoder against upstream's: the same bytes, and the CPU per megapixel of each.

Upstream's encoder is spice-common's `common/quic.c` (what spice-server uses). Give this
script a spice-common checkout (`git clone https://gitlab.freedesktop.org/spice/spice-common`);
it copies the five QUIC source files into a temporary folder, compiles them with the system
compiler (-O3, like our extension's default) against a few stub macros of its own in place
of glib and spice-protocol, and loads the result with ctypes. Nothing of upstream enters
this repository; the build lives only for the run.

- Bytes: both encoders on generated images of every kind and size, random adversarial
  pictures (noise, few values, repeated rows, uniform; sizes 1x1 up), RGB32 and RGBA: the
  outputs must be byte for byte identical (the strongest check of the format short of a
  client: spice-gtk's decoder is the same code's other half).
- Speed: the fastest of repeats on one thread, in thread CPU time (less disturbed by
  other work on a shared machine than wall time), 1024x768 images.

Writes the table in docs/codecs.md between <!-- quic-upstream:begin --> and
<!-- quic-upstream:end -->.

    .venv/bin/python benchmarks/quic_upstream.py --spice-common PATH [--no-write]
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

import numpy as np  # noqa: E402
from _report import command_line, cpu_model, load_average, md_table, publish  # noqa: E402
from support import images  # noqa: E402

from spice_twisted.codecs._native import _quic  # noqa: E402

CODECS_DOC = ROOT / "docs" / "codecs.md"
SOURCES = ("quic.c", "quic.h", "quic_config.h", "quic_tmpl.c", "quic_family_tmpl.c")

# Stand-ins for the glib and spice-protocol macros upstream's QUIC files use.
STUBS = {
    "config.h": "#include <stdint.h>\n#include <stdlib.h>\n#include <stddef.h>\n",
    "spice/types.h": "#include <stdint.h>\n",
    "spice/start-packed.h": "",
    "spice/end-packed.h": "",
    "spice/macros.h": """
#define SPICE_BEGIN_DECLS
#define SPICE_END_DECLS
#define SPICE_GNUC_UNUSED __attribute__((unused))
#define SPICE_ATTR_PACKED __attribute__((packed))
#define SPICE_VERIFY(x) _Static_assert(x, #x)
#define G_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define GUINT32_TO_LE(x) (x)
#define GUINT32_FROM_LE(x) (x)
#define TRUE 1
#define FALSE 0
#define ABS(x) ((x) < 0 ? -(x) : (x))
#define SPICE_CONSTRUCTOR_FUNC(f) __attribute__((constructor)) static void f(void)
""",
    "macros.h": "#define SPICE_GNUC_NORETURN __attribute__((noreturn))\n#define SPICE_GNUC_PRINTF(a, b) __attribute__((format(printf, a, b)))\n",
    "log.h": """#include <assert.h>
#define spice_assert(x) assert(x)
#define spice_extra_assert(x)
#define spice_return_if_fail(x) do { if (!(x)) return; } while (0)
#define spice_warn_if_reached() do {} while (0)
""",
    "harness.c": """#include "config.h"
#include <stdio.h>
#include "quic.h"
static void fail(QuicUsrContext *u, const char *f, ...) { fprintf(stderr, "upstream quic: %s", f); abort(); }
static void quiet(QuicUsrContext *u, const char *f, ...) {}
static void *alloc(QuicUsrContext *u, int n) { return malloc(n); }
static void release(QuicUsrContext *u, void *p) { free(p); }
static int no_space(QuicUsrContext *u, uint32_t **io, int rows) { return 0; }
static int no_lines(QuicUsrContext *u, uint8_t **l) { return 0; }
static QuicUsrContext usr = { (void *)fail, quiet, quiet, alloc, release, no_space, no_lines };
static QuicContext *ctx;
int upstream_encode(int type, int w, int h, uint8_t *px, int stride, uint32_t *out, int nwords)
{
    if (!ctx) ctx = quic_create(&usr);
    return quic_encode(ctx, type, w, h, px, h, stride, out, nwords);
}
""",
}


def build(checkout: Path, tmp: Path) -> Callable[[np.ndarray, bool], bytes]:
    for name in SOURCES:
        shutil.copy(checkout / "common" / name, tmp / name)
    for name, text in STUBS.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    lib = tmp / "libupstream_quic.so"
    cmd = ["cc", "-O3", "-fPIC", "-shared", "-w", f"-I{tmp}", "-o", str(lib), str(tmp / "harness.c"), str(tmp / "quic.c")]
    subprocess.run(cmd, check=True)
    so = ctypes.CDLL(str(lib))
    so.upstream_encode.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    buf: dict[str, np.ndarray] = {}

    def encode(px: np.ndarray, alpha: bool = False) -> bytes:
        px = np.ascontiguousarray(px)
        h, w = px.shape[:2]
        n = w * h * 5 + 64
        if buf.get("out") is None or len(buf["out"]) < n:
            buf["out"] = np.zeros(n, np.uint32)
        words = so.upstream_encode(5 if alpha else 4, w, h, px.ctypes.data, w * 4, buf["out"].ctypes.data, n)
        return buf["out"][:words].tobytes()

    return encode


def pictures(seed: int = 0, n: int = 400) -> list[np.ndarray]:
    out = [images.KINDS[k](h, w) for k in images.KINDS for h, w in ((768, 1024), (75, 130), (17, 3000))]
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = int(rng.integers(1, 80)), int(rng.integers(1, 300))
        kind = rng.integers(0, 4)
        if kind == 0:
            px = rng.integers(0, 256, (h, w, 4), np.uint8)
        elif kind == 1:
            px = (rng.integers(0, 3, (h, w, 4)) * 100).astype(np.uint8)
        elif kind == 2:
            px = np.repeat(rng.integers(0, 256, (1, w, 4), np.uint8), h, 0)
            px[rng.random(h) < 0.3] = 7
        else:
            px = np.broadcast_to(rng.integers(0, 256, 4, np.uint8), (h, w, 4)).copy()
        out.append(px)
    return out


def cpu_mp_s(fn: Callable[[], object], pixels: int, reps: int = 11) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    return pixels / best / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spice-common", type=Path, required=True, help="a spice-common checkout (its common/quic.c is compiled)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/codecs.md")
    args = p.parse_args()
    load = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        upstream = build(args.spice_common, Path(tmp))
        checked = 0
        for px in pictures():
            for alpha in (False, True):
                ours, theirs = _quic.encode(px, alpha=alpha), upstream(px, alpha)
                if ours != theirs:
                    raise SystemExit(f"DIFFERENT bytes for a {px.shape[1]}x{px.shape[0]} picture (alpha={alpha})")
                checked += 1
        print(f"identical bytes on {checked} encodes", flush=True)
        rows = []
        for kind in images.KINDS:
            px = np.ascontiguousarray(images.KINDS[kind](768, 1024))
            n = px.shape[0] * px.shape[1]
            o = cpu_mp_s(lambda px=px: _quic.encode(px), n)
            u = cpu_mp_s(lambda px=px: upstream(px), n)
            size = len(_quic.encode(px))
            rows.append([kind, f"{size / n:.2f}", f"{o:,.0f}", f"{u:,.0f}", f"{o / u:.2f}"])
            print(f"{kind:13s} {size / n:.2f} B/px  ours {o:.0f} MP/s  upstream {u:.0f} MP/s", flush=True)
    now = datetime.datetime.now(datetime.UTC)
    publish(
        CODECS_DOC,
        "quic-upstream",
        [
            md_table(["content (1024x768)", "bytes per pixel", "ours MP/s", "upstream MP/s", "ours / upstream"], rows),
            "",
            f"Identical bytes on {checked} encodes (every kind and size above, 400 random adversarial pictures, RGB32 and "
            f"RGBA). Measured by `{command_line()}` on {now:%Y-%m-%d}, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}, "
            f"{platform.system()}), shared with other work (load average {load} at the start); speeds are the fastest of "
            "repeats in thread CPU time, one thread.",
        ],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
