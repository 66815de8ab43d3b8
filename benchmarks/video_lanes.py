"""The stateful video encodes in their lanes: how long a frame waits for its payload.

A VP8, VP9 or H.264 stream played by clients on both tiers is encoded twice: the full tier
every frame, the low tier every other frame (codecs/video.py). Those encodes run in the
render service's ordered video lanes (render/payloads.py), off the reactor. This drives
that path as the server does: a real Twisted reactor, the real `PayloadService`, a stream
of moving plasma at 25 fps, each frame requested for the full tier and every other one for
the low tier. It reports, per tier, the time from a frame's request to its payload on the
reactor (p50, p95, max), and the encode CPU time a frame. When the lanes fall behind the
frame rate, the wait grows with every frame: a client would then skip to key frames
(the pipe holds 8 frames). Written to docs/performance.md between <!-- video-lanes:begin -->
and <!-- video-lanes:end -->. One run on a shared machine: read ratios, not digits.

    .venv/bin/python benchmarks/video_lanes.py [--no-write] [--seconds 6] [--size 1280x720]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, cpu_model, load_average, publish_table  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from spice_twisted.codecs import video  # noqa: E402
from spice_twisted.render.counters import RenderCounters  # noqa: E402
from spice_twisted.render.drawable import Drawable  # noqa: E402
from spice_twisted.render.payloads import PayloadService  # noqa: E402
from spice_twisted.render.rect import Rect  # noqa: E402
from spice_twisted.sources.demo_video import Plasma  # noqa: E402

FPS = 25


class _Timed:
    """One tier's encoder, timing each encode's CPU in the lane's thread."""

    def __init__(self, tier: str, w: int, h: int) -> None:
        self.enc = video.stateful_encoder(tier, w, h, FPS)
        self.cpu: list[float] = []

    def job(self, pixels: np.ndarray, key: bool):
        def run():
            t = time.thread_time()
            payload = self.enc.encode(pixels, key)
            self.cpu.append(time.thread_time() - t)
            return payload

        return run


async def play(reactor, codec: str, w: int, h: int, seconds: float) -> list[list[str]]:
    """Play `seconds` of plasma through a fresh PayloadService; a row per tier."""
    low = video.STATEFUL_LOW[codec]
    service = PayloadService(reactor, RenderCounters())
    service.start()
    tiers = {codec: _Timed(codec, w, h), low: _Timed(low, w, h)}
    waits: dict[str, list[float]] = {codec: [], low: []}
    n = int(seconds * FPS)
    plasma = Plasma(w, h)
    pics = [plasma.frame(k) for k in range(n)]
    outstanding = [0]
    started = time.monotonic()
    for k in range(n):
        d = Drawable(0, 0, Rect(0, 0, w, h), pics[k], service)
        for tier in (codec, low) if k % 2 == 0 else (codec,):
            d.hold()
            outstanding[0] += 1
            asked = time.monotonic()

            def done(d=d, tier=tier, asked=asked) -> None:
                waits[tier].append(time.monotonic() - asked)
                outstanding[0] -= 1
                d.release()

            service.request(d, tier, job=tiers[tier].job(d.pixels, k == 0))
            d.when_ready(tier, done)
        next_at = started + (k + 1) / FPS
        await task.deferLater(reactor, max(0.0, next_at - time.monotonic()), lambda: None)
    while outstanding[0]:
        await task.deferLater(reactor, 0.01, lambda: None)
    service.stop()
    rows = []
    for tier, timed in tiers.items():
        ms = np.array(waits[tier]) * 1000
        rows.append(
            [
                f"{w}x{h}",
                tier,
                str(len(ms)),
                f"{np.median(timed.cpu) * 1000:.1f}",
                f"{np.percentile(ms, 50):.0f}",
                f"{np.percentile(ms, 95):.0f}",
                f"{ms.max():.0f}",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--size", default="1280x720")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    machine = f"Measured by `{command_line()}` on {cpu_model()} (load {load_average()})"

    async def run(reactor) -> None:  # (react exits the process when this ends)
        rows: list[list[str]] = []
        for codec in (video.VP8, video.VP9, video.H264):
            rows += await play(reactor, codec, w, h, args.seconds)
        header = ["stream", "tier", "frames", "encode CPU ms (median)", "wait p50 ms", "wait p95 ms", "wait max ms"]
        intro = [
            f"{machine}: {args.seconds:.0f} s of plasma at {FPS} fps, the full tier every frame and the low tier",
            "every other frame; the wait is from a frame's request to its payload on the reactor.",
        ]
        publish_table(ROOT / "docs" / "performance.md", "video-lanes", intro, header, rows, write=not args.no_write)

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
