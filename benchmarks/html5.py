"""Bytes spice-html5 receives per setting: the browser client in headless Chromium, through
websockify and a wire tap (the harness of tests/test_html5_client.py).

For each picture (the tests' noisy 333x217 picture, a 457x301 text/UI picture, a 1024x768
photo-like one) and each `--image-compression` (auto_glz, quic, lz, off) a fresh server
serves the picture; once spice-html5's canvas equals the server's framebuffer, the image
bytes that crossed the tap are counted (bytes per pixel drawn, and the image types). The
live demo is measured the same way over its first --draws draws. Every row is checked
exact, so a number never comes from a picture spice-html5 failed to draw.

It writes the table into docs/codecs.md (between <!-- html5bench:begin --> and
<!-- html5bench:end -->) unless --no-write.

    .venv/bin/python benchmarks/html5.py [--draws 150] [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))  # the checkout, its test support

import argparse  # noqa: E402
import tempfile  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, md_table, publish  # noqa: E402
from PIL import Image  # noqa: E402
from support import html5, images  # noqa: E402
from support.processes import HarnessServer, as_rgb  # noqa: E402
from support.tap import TapConnection, WireTap  # noqa: E402

from spice_twisted.wire.enums import ImageType  # noqa: E402

DOC = ROOT / "docs" / "codecs.md"
SECTION = "html5bench"
SETTINGS = ("auto_glz", "quic", "lz", "off")


def pictures(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(2024)  # the tests' random_image
    made = {
        "noise 333x217": rng.integers(0, 256, (217, 333, 3), dtype=np.uint8),
        "text/UI 457x301": images.text_ui(301, 457)[..., 2::-1],
        "photo 1024x768": images.photo(768, 1024)[..., 2::-1],
    }
    out = {}
    for i, (name, rgb) in enumerate(made.items()):
        out[name] = tmp / f"picture-{i}.png"
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(out[name])
    return out


def measure(tmp: Path, server_args: list[str], draws: int | None) -> list[str]:
    server = HarnessServer(*server_args, tmp=tmp)
    tap = WireTap(server.port)
    bridge = html5.Bridge(tap.port, tmp)
    driver = html5.chromium(tmp / "chromium")
    try:
        v = html5.Html5Viewer(driver, bridge)
        conn: TapConnection = tap.display(timeout=30)
        if draws:
            conn.wait_for(lambda k: len(k.draws()) >= draws, timeout=180, what=f"{draws} draws")
            server.pause()
        v.wait_exact(lambda: as_rgb(server.framebuffer()), "the server's framebuffer", timeout=60)
        got = conn.draws()[:draws] if draws else conn.draws()
        area = sum((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in got)
        nbytes = sum(len(d.payload) for d in got)
        types = Counter(ImageType(d.image_type).name for d in got)
        return [f"{nbytes / area:.3f}", f"{nbytes:,}", ", ".join(f"{t} {n}" for t, n in types.most_common())]
    finally:
        driver.quit()
        bridge.stop()
        tap.close()
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=150, help="draws of the live demo to count")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/codecs.md alone")
    args = ap.parse_args()
    missing = html5.missing_tools()
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: {html5.INSTALL_HINT}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, path in pictures(tmp).items():
            for s in SETTINGS:
                rows.append([name, s, *measure(tmp, ["--source", f"image:{path}", "--image-compression", s], None)])
                print(" | ".join(rows[-1]), flush=True)
        for s in SETTINGS:
            rows.append([f"live demo, first {args.draws} draws", s, *measure(tmp, ["--image-compression", s], args.draws)])
            print(" | ".join(rows[-1]), flush=True)
    table = md_table(["content", "--image-compression", "bytes/pixel", "image bytes", "image types"], rows)
    text = publish(
        DOC, SECTION, [table, "", f"Raw is 4.0 bytes a pixel. Made by `{command_line('.venv/bin/python')}`."], write=not args.no_write
    )
    print(text)


if __name__ == "__main__":
    main()
