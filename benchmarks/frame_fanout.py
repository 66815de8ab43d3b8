"""The frame's reactor time per client, in process: what N clients cost one frame.

The server's display side runs in this process over Twisted's in-memory transports and a
fake clock (tests/support/inprocess.py: the real SpiceServer, render service, pipes and
display channels; encodes inline, no threads). N display clients (LZ4) keep up (each
frame, their transports are emptied and an ACK is fed back). Each frame paints one
40x30 two-colour rect; measured with `time.perf_counter` over --frames frames, the
median of --repeat runs:

- frame: `RenderService._frame` alone (the pacer's run), the time the reactor spends
  in the frame: before issue 18 it held every client's marshal and write;
- frame + sends: the frame and the reactor turns that follow it (`clock.advance(0)`),
  so every client's marshal and write: the whole per-frame reactor work.

`--root DIR` runs another checkout's code (an older commit: before/after); the section
"Frame cost per client" of docs/performance.md is written from `--before JSON` (a
`--json` of a run with --root) and this run.

    .venv/bin/python benchmarks/frame_fanout.py [--counts 1,8,32] [--frames 300] [--repeat 5]
        [--root DIR --json before.json] [--before before.json] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
NAME = "frame-fanout"

CHILD = """
import json, sys, time
from support.inprocess import Reader, make_server, open_display, stripes
from spice_twisted.render.rect import Rect

def run(n, frames):
    srv = make_server()
    readers = [Reader(*open_display(srv, caps={5})) for _ in range(n)]  # 5: DISPLAY_CAP_LZ4_COMPRESSION
    for r in readers:
        r.catch_up(srv)
    frame = total = 0.0
    for i in range(frames + 20):
        x, y = (i * 7) % 150, (i * 3) % 60
        stripes(srv, Rect(x, y, x + 40, y + 30), i % 200, flush=False)
        t0 = time.perf_counter()
        srv.render.pacer.run_now()
        t1 = time.perf_counter()
        srv.reactor.advance(0)
        t2 = time.perf_counter()
        if i >= 20:  # warmed up
            frame += t1 - t0
            total += t2 - t0
        for r in readers:
            r.t.clear()
            r.ack()
    return 1e6 * frame / frames, 1e6 * total / frames

n, frames = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps(run(n, frames)))
"""


def measure(root: Path, n: int, frames: int) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "tests")]))
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(frames)], env=env, cwd=root, capture_output=True, text=True, check=True)
    frame, total = json.loads(out.stdout.strip().splitlines()[-1])
    return frame, total


def table(results: dict[str, dict[str, list[float]]], counts: list[int]) -> list[str]:
    lo = str(counts[0])
    rows = [
        "| clients | frame µs | frame + sends µs | frame vs 1 client | frame + sends vs 1 client | frame µs per extra client |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in counts:
        f, t = results[str(n)]["frame"], results[str(n)]["total"]
        f1, t1 = results[lo]["frame"], results[lo]["total"]
        per = (f - f1) / (n - counts[0]) if n != counts[0] else 0.0
        rows.append(f"| {n} | {f:.0f} | {t:.0f} | {f / f1:.2f} | {t / t1:.2f} | {per:.1f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", default="1,8,32")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    p.add_argument("--json", type=Path)
    p.add_argument("--before", type=Path, help="a --json of a run with --root at the code before")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    counts = [int(c) for c in args.counts.split(",") if c]
    results: dict[str, dict[str, float]] = {}
    for n in counts:
        runs = [measure(args.root.resolve(), n, args.frames) for _ in range(args.repeat)]
        results[str(n)] = {"frame": statistics.median(r[0] for r in runs), "total": statistics.median(r[1] for r in runs)}
        print(f"N={n:3d}: frame {results[str(n)]['frame']:7.0f} us, frame + sends {results[str(n)]['total']:7.0f} us", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "results": results}))
    if args.no_write:
        return
    before = json.loads(args.before.read_text()) if args.before else None
    lines = [
        f"<!-- {NAME}:begin -->",
        "## Frame cost per client (in process)",
        "",
        "What N display clients cost the reactor per frame, without sockets or other processes: the real server "
        "objects over Twisted's in-memory transports (tests/support/inprocess.py), LZ4 clients that keep up, one "
        f"40x30 two-colour update per frame, {args.frames} frames, the median of {args.repeat} runs. **frame** is "
        "`RenderService._frame` alone; **frame + sends** adds the reactor turns after it, where every client's "
        "marshal and write now run (before issue 18 they ran inside the frame).",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; a 2-core machine shared with other work.",
        "- Reproduce: `.venv/bin/python benchmarks/frame_fanout.py` (`--root DIR --json before.json` on an older "
        "checkout, then `--before before.json`).",
        "",
    ]
    if before is not None:
        lines += [
            "Before (the frame marshalled and wrote to every client):",
            "",
            *table(before["results"], before["counts"]),
            "",
            "After:",
            "",
        ]
    lines += [*table(results, counts), "", f"<!-- {NAME}:end -->"]
    section = "\n".join(lines)
    text = DOC.read_text()
    begin, end = f"<!-- {NAME}:begin -->", f"<!-- {NAME}:end -->"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
