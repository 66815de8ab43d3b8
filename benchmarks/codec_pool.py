"""Codec pool benchmark: a thread hand-off against the encodes it would carry; do the codecs release the GIL?

Part 1, the inline threshold (codecs.INLINE_PIXELS: an encode smaller than that runs
on the reactor because handing it to the codec pool would cost more). On a running
Twisted reactor with a ThreadPool(1, 2) like the codec pool's:

- hand-off: `deferToThreadPool(reactor, pool, noop)` round trips, one after the other;
  the wall time of each round trip (submit to callback), and the reactor thread's own
  CPU per hand-off (`time.thread_time` on the reactor thread over the whole chain:
  submit, wake-up, callback, the Deferred). Also a burst of 16 submitted at once (a
  frame with 16 drawables), reactor CPU per job.
- encodes: `codecs.encode(codec, pixels)` inline, for square images 16x16 .. 512x512
  of demo-desktop pixels (and of noise for LZ4: incompressible, which LZ4 skips through fast); and the same encode
  through the pool (round trip).
The crossover is where the inline encode costs the reactor as much as a hand-off does.

Part 2, the GIL: one thread encoding a large buffer twice against two threads encoding
it once each at the same time (wall ratio: 0.5 = the two ran in parallel, the codec
released the GIL; 1.0 = serialised; needs both cores free), and how far a pure-Python
loop on the main thread gets inside another thread's calls (near 0 = the call holds the
GIL, whatever the load; up to 1.0 = released). The numpy copy is the control that holds it.

Writes the "Codec pool" section of docs/performance.md (between <!-- codec-pool:begin -->
and <!-- codec-pool:end -->). Numbers are from one run on a noisy machine; nothing asserts them.

    .venv/bin/python benchmarks/codec_pool.py [--rounds 2000] [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark the checkout, not an installed copy

import argparse  # noqa: E402
import bisect  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, cpu_model, load_average, md_table, write_between  # noqa: E402
from twisted.internet import defer, task, threads  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402

from spice_twisted import codecs  # noqa: E402
from spice_twisted.sources.demo import DemoSource  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
SECTION = "codec-pool"
SIDES = (16, 32, 64, 128, 256, 512)
BURST = 16


def desktop() -> np.ndarray:
    return DemoSource(fps=1.0).canvas  # 1024x768 B,G,R,X: gradient, title bar, a window with text


def crop(img: np.ndarray, side: int) -> np.ndarray:
    """A contiguous side x side crop over the demo's window and text, as Surface.crop makes it."""
    y, x = 60, 40
    return np.frombuffer(img[y : y + side, x : x + side].tobytes(), np.uint8).reshape(side, side, 4)


def noise(side: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (side, side, 4), dtype=np.uint8)


def time_inline(fn: Callable[[], Any], budget: float = 0.15, min_reps: int = 5) -> float:
    """Median seconds of fn() over repetitions filling about `budget` seconds."""
    fn()  # warm
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-7)
    reps = max(min_reps, min(20000, int(budget / one)))
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def noop() -> None:
    return None


async def handoff(reactor: Any, pool: ThreadPool, fn: Callable[..., Any], *a: Any, rounds: int) -> dict[str, float]:
    """Sequential round trips of fn through the pool: wall per trip (median, p90), reactor CPU per trip."""
    for _ in range(20):  # warm: threads started, code paths hot
        await threads.deferToThreadPool(reactor, pool, fn, *a)
    trips, batch_cpu, batch_other = [], [], []
    batch = max(10, rounds // 10)
    wall0 = time.perf_counter()
    for start in range(0, rounds, batch):
        n = min(batch, rounds - start)
        cpu0, proc0 = time.thread_time(), time.process_time()
        for _ in range(n):
            t = time.perf_counter()
            await threads.deferToThreadPool(reactor, pool, fn, *a)
            trips.append(time.perf_counter() - t)
        reactor_cpu = time.thread_time() - cpu0
        batch_cpu.append(reactor_cpu / n)
        batch_other.append((time.process_time() - proc0 - reactor_cpu) / n)  # the pool's thread(s)
    wall = time.perf_counter() - wall0
    trips.sort()
    return {
        "rounds": rounds,
        "trip_median_us": 1e6 * trips[len(trips) // 2],
        "trip_p90_us": 1e6 * trips[int(len(trips) * 0.9)],
        # median over batches: a batch that another process interrupted does not set the figure
        "reactor_cpu_us": 1e6 * statistics.median(batch_cpu),
        "reactor_cpu_min_us": 1e6 * min(batch_cpu),
        # the worker's side: for a no-op all of it is Python, holding the GIL the reactor may want
        "worker_cpu_us": 1e6 * statistics.median(batch_other),
        "wall_us": 1e6 * wall / rounds,
    }


async def burst(reactor: Any, pool: ThreadPool, rounds: int) -> dict[str, float]:
    """BURST no-op jobs submitted at once, gathered; reactor CPU per job."""
    n = max(1, rounds // BURST)
    per_job = []
    wall0 = time.perf_counter()
    for _ in range(n):
        cpu0 = time.thread_time()
        await defer.gatherResults([threads.deferToThreadPool(reactor, pool, noop) for _ in range(BURST)])
        per_job.append((time.thread_time() - cpu0) / BURST)
    return {
        "jobs": n * BURST,
        "reactor_cpu_us": 1e6 * statistics.median(per_job),
        "wall_us": 1e6 * (time.perf_counter() - wall0) / (n * BURST),
    }


def median_merge(runs: list[Any]) -> Any:
    """Element-wise median of equally shaped dicts/lists of numbers (the sweeps of part 1)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median_merge([r[k] for r in runs]) for k in first}
    if isinstance(first, list):
        return [median_merge([r[i] for r in runs]) for i in range(len(first))]
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    return statistics.median(runs)


async def sweep(reactor: Any, pool: ThreadPool, args: argparse.Namespace, img: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {"handoff_start": await handoff(reactor, pool, noop, rounds=args.rounds)}
    out["burst"] = await burst(reactor, pool, args.rounds)
    rows = []
    for side in SIDES:
        px, nz = crop(img, side), noise(side, rng)
        row: dict[str, Any] = {"side": side, "pixels": side * side}
        surface = img[:side, :side]
        row["crop_us"] = 1e6 * time_inline(lambda s=surface: np.frombuffer(s.tobytes(), np.uint8))
        row["bitmap_us"] = 1e6 * time_inline(lambda px=px: codecs.encode(codecs.BITMAP, px))
        row["lz4_us"] = 1e6 * time_inline(lambda px=px: codecs.encode(codecs.LZ4, px))
        row["lz4_noise_us"] = 1e6 * time_inline(lambda nz=nz: codecs.encode(codecs.LZ4, nz))
        row["lz4_ratio"] = codecs.encode(codecs.LZ4, px).nbytes / (side * side * 4)
        trips = max(50, min(args.rounds, int(0.3e6 / max(row["bitmap_us"], row["lz4_us"], 20.0))))
        row["bitmap_trip"] = await handoff(reactor, pool, codecs.encode, codecs.BITMAP, px, rounds=trips)
        row["lz4_trip"] = await handoff(reactor, pool, codecs.encode, codecs.LZ4, px, rounds=trips)
        rows.append(row)
    out["rows"] = rows
    out["handoff_end"] = await handoff(reactor, pool, noop, rounds=args.rounds)  # again, after the sizes
    return out


async def part1(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    """`--repeat` sweeps; every figure reported is the median over them (a shared machine)."""
    pool = ThreadPool(1, 2, name="bench-codec")  # as render/codec_pool.py makes it
    pool.start()
    try:
        img, rng = desktop(), np.random.default_rng(8)
        runs = []
        for k in range(args.repeat):
            runs.append(await sweep(reactor, pool, args, img, rng))
            h = runs[-1]["handoff_start"]
            print(f"sweep {k + 1}/{args.repeat}: no-op hand-off reactor CPU {h['reactor_cpu_us']:.1f} us", flush=True)
        out = median_merge(runs)
        # the no-op hand-off: the median over every sweep's two measurements
        hs = [r[key] for r in runs for key in ("handoff_start", "handoff_end")]
        out["handoff"] = median_merge(hs)
        out["handoff"]["rounds"] = sum(h["rounds"] for h in hs)
        out["handoff"]["reactor_cpu_min_us"] = min(h["reactor_cpu_min_us"] for h in hs)
        out["handoff_all_us"] = [h["reactor_cpu_us"] for h in hs]
        out["sweeps"] = len(runs)
        for row in out["rows"]:
            side = row["side"]
            print(
                f"{side:>3}x{side:<3}: crop {row['crop_us']:7.1f} us  bitmap {row['bitmap_us']:6.1f} us  lz4 {row['lz4_us']:8.1f} us "
                f"(noise {row['lz4_noise_us']:8.1f}, ratio {row['lz4_ratio']:.2f})  pool trip bitmap "
                f"{row['bitmap_trip']['trip_median_us']:8.1f} us  lz4 {row['lz4_trip']['trip_median_us']:8.1f} us "
                f"(reactor {row['lz4_trip']['reactor_cpu_us']:.1f})",
                flush=True,
            )
        h = out["handoff"]
        print(
            f"no-op hand-off: reactor CPU {h['reactor_cpu_us']:.1f} us (all: {', '.join(f'{x:.0f}' for x in out['handoff_all_us'])}), "
            f"worker {h['worker_cpu_us']:.1f} us, round trip {h['trip_median_us']:.0f} us median, {h['trip_p90_us']:.0f} us p90; "
            f"bursts of {BURST}: {out['burst']['reactor_cpu_us']:.1f} us reactor CPU a job",
            flush=True,
        )
        return out
    finally:
        pool.stop()


# --- part 2: the GIL ----------------------------------------------------------------------------
def big_buffer(mib: int) -> np.ndarray:
    """About `mib` MiB of demo desktop, tiled (compressible like a screen)."""
    img = desktop()
    reps = max(1, (mib << 20) // img.nbytes)
    return np.ascontiguousarray(np.concatenate([img] * reps, axis=0))


def parallel_ratio(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Wall of two fn() in two threads at once / wall of two fn() one after the other."""
    fn()
    serial, parallel = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        fn()
        serial.append(time.perf_counter() - t)
        ts = [threading.Thread(target=fn) for _ in range(2)]
        t = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        parallel.append(time.perf_counter() - t)
    s, p = statistics.median(serial), statistics.median(parallel)
    return {"serial_s": s, "parallel_s": p, "ratio": p / s, "one_s": s / 2}


def python_progress(fn: Callable[[], Any], seconds: float) -> dict[str, float]:
    """How far a pure-Python loop on this thread gets *during* another thread's fn() calls, relative
    to its speed alone. A call that holds the GIL lets no bytecode run on any other thread until it
    returns (about 0 whatever the cores); one that releases it lets the loop run (1.0 on a free core,
    less when other work shares the cores)."""
    step = 100

    def spin(t_end: float, marks: list[float] | None) -> int:
        n = 0
        while (now := time.perf_counter()) < t_end:
            for _ in range(step):
                n += 1
            if marks is not None:
                marks.append(now)
        return n

    t = time.perf_counter()
    alone_rate = spin(t + seconds / 2, None) / (time.perf_counter() - t)
    windows: list[tuple[float, float]] = []
    done = threading.Event()

    def worker() -> None:
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            fn()
            windows.append((t0, time.perf_counter()))
            time.sleep(0.001)
        done.set()

    marks: list[float] = []
    th = threading.Thread(target=worker)
    th.start()
    while not done.is_set():
        spin(time.perf_counter() + 0.01, marks)
    th.join()
    inside = sum(bisect.bisect_left(marks, b) - bisect.bisect_right(marks, a) for a, b in windows)  # marks are sorted
    expected = alone_rate * sum(b - a for a, b in windows) / step
    return {"alone_rate": alone_rate, "calls": len(windows), "marks_inside": inside, "ratio": inside / expected if expected else 0.0}


GIL_JOBS = {
    "lz4": "`codecs.encode('lz4', pixels)` (lz4.block.compress)",
    "copy": "`pixels.tobytes()` (the numpy copy Surface.crop makes of every drawable, and the bitmap codec's fallback)",
}


def part2(args: argparse.Namespace) -> dict[str, Any]:
    buf = big_buffer(args.gil_mib)
    out: dict[str, Any] = {"mib": buf.nbytes / (1 << 20), "shape": list(buf.shape)}
    jobs: dict[str, Callable[[], Any]] = {"lz4": lambda: codecs.encode(codecs.LZ4, buf), "copy": buf.tobytes}
    for name, fn in jobs.items():
        out[name] = {"parallel": parallel_ratio(fn, args.gil_repeats), "progress": python_progress(fn, 1.0)}
        p, g = out[name]["parallel"], out[name]["progress"]
        print(
            f"GIL {name}: one run {1e3 * p['one_s']:.1f} ms; two threads / one thread twice = {p['ratio']:.2f}; "
            f"Python loop on the main thread meanwhile at {g['ratio']:.2f} of its idle speed",
            flush=True,
        )
    return out


# --- output ---------------------------------------------------------------------------------------


def crossover(rows: list[dict[str, Any]], key: str, cost: float) -> str:
    """The first size whose encode costs more than `cost` us, interpolated in pixels."""
    prev = None
    for r in rows:
        if r[key] >= cost:
            if prev is None:
                return f"below {r['side']}x{r['side']}"
            # linear in pixels between the two sizes around the crossing
            p0, p1, c0, c1 = prev["pixels"], r["pixels"], prev[key], r[key]
            px = p0 + (cost - c0) * (p1 - p0) / (c1 - c0) if c1 != c0 else p1
            side = int(round(px**0.5))
            return f"about {int(px)} pixels (~{side}x{side})"
        prev = r
    return f"above {rows[-1]['side']}x{rows[-1]['side']}"


def threshold(pixels: int) -> str:
    if pixels >= 1 << 40:
        return "always inline"
    side = int(pixels**0.5)
    return f"{pixels} pixels ({side}x{side})" if side * side == pixels else f"{pixels} pixels"


def at(rows: list[dict[str, Any]], key: str, pixels: int) -> str:
    r = next((r for r in rows if r["pixels"] == pixels), None)
    return f"{r[key]:.0f} us" if r else "not measured"


def findings(p1: dict[str, Any], p2: dict[str, Any]) -> list[str]:
    rows, h, b = p1["rows"], p1["handoff"], p1["burst"]
    cost = h["reactor_cpu_us"]
    bmp_t, lz_t = codecs.INLINE_PIXELS[codecs.BITMAP], codecs.INLINE_PIXELS[codecs.LZ4]
    big = rows[-1]
    out = [
        f"**A hand-off** costs the reactor thread {cost:.0f} us of CPU when jobs go one at a time (median over batches; "
        f"{b['reactor_cpu_us']:.0f} us a job in bursts of {BURST}), and takes {h['trip_median_us']:.0f} us from submit "
        f"to callback (median; p90 {h['trip_p90_us']:.0f} us). The reactor pays the CPU; the pool's thread spends "
        f"another {h['worker_cpu_us']:.0f} us of Python per job, with the GIL, so a reactor that is busy meanwhile loses "
        "that time too; the round trip is latency the drawable waits.",
        f"**bitmap** (threshold: {threshold(bmp_t)}): the encode wraps the crop's own `bytes` (no copy), "
        f"{max(r['bitmap_us'] for r in rows):.0f} us or less at every size, far below a "
        "hand-off: always inline is right. The copy that remains is `Surface.crop` on the reactor, "
        f"{big['crop_us']:.0f} us at {big['side']}x{big['side']}, for every codec; it holds the GIL (below), so a thread "
        "would not take it off the reactor's back.",
        f"**lz4** (threshold: {threshold(lz_t)}, where the encode takes {at(rows, 'lz4_us', lz_t)}). The direct "
        "comparison is the same encode inline and through the pool (the table's last column: the reactor's CPU for "
        "submitting it and taking the result back): "
        + ", ".join(
            f"{r['side']}x{r['side']} {r['lz4_us']:.0f} us inline / {r['lz4_trip']['reactor_cpu_us']:.0f} us handed off" for r in rows
        )
        + f". Inline is cheaper for the reactor up to {cheaper_inline(rows)}; counting the pool thread's Python too "
        f"(reactor + {h['worker_cpu_us']:.0f} us), the break-even is at {crossover(rows, 'lz4_us', cost + h['worker_cpu_us'])}. "
        "Against the no-op hand-off alone the crossover is at "
        f"{crossover(rows, 'lz4_us', cost)} (the least batch, {h['reactor_cpu_min_us']:.0f} us: "
        f"{crossover(rows, 'lz4_us', h['reactor_cpu_min_us'])}); against a hand-off in a burst of {BURST} "
        f"({b['reactor_cpu_us']:.0f} us a job, the wake-up shared) at {crossover(rows, 'lz4_us', b['reactor_cpu_us'])}. "
        + (
            f"So {threshold(lz_t)} is the break-even only when a frame hands off many encodes at once; for frames with one "
            "or a few drawables (the demo's, a typing or scrolling desktop's) the numbers say the LZ4 threshold could be "
            f"raised to about {cheaper_inline(rows)}, where an inline encode takes {at(rows, 'lz4_us', cheaper_inline_pixels(rows))} "
            "of reactor time, less than a hand-off of it, and a pause far below a 33 ms frame interval."
            if cheaper_inline_pixels(rows) > lz_t
            else "The threshold is at or above the measured crossover."
        ),
    ]
    lz, cp = p2["lz4"], p2["copy"]
    released = lz["progress"]["ratio"] > 0.2 and cp["progress"]["ratio"] < 0.1
    out.append(
        ("**LZ4 releases the GIL**" if released else "**LZ4 did not clearly release the GIL here**")
        + f" (the numpy copy, which holds it, is the control, measured in the same run): during another thread's "
        f"compress calls a pure-Python loop ran at {lz['progress']['ratio']:.2f} of its speed alone, during its copy "
        f"calls at {cp['progress']['ratio']:.2f} (no bytecode runs while a call holds the GIL); two threads compressing {p2['mib']:.0f} MiB each at "
        f"once took {lz['parallel']['ratio']:.2f}x the wall time of one thread doing both, against "
        f"{cp['parallel']['ratio']:.2f}x for the copy (0.5 = fully parallel, which needs both cores free: the load "
        "of the other work on this shared machine pushes both ratios up and the loop's speed down, but cannot make a "
        "held GIL look released). "
        + (
            "On the codec pool an LZ4 encode leaves the reactor free to run; the copy in `Surface.crop` would not be."
            if released
            else "Re-run on a quieter machine before concluding."
        )
    )
    return out


def cheaper_inline_pixels(rows: list[dict[str, Any]]) -> int:
    """The largest measured size (in pixels) up to which every LZ4 encode was cheaper inline than through the pool."""
    best = 0
    for r in rows:
        if r["lz4_us"] >= r["lz4_trip"]["reactor_cpu_us"]:
            break
        best = r["pixels"]
    return best


def cheaper_inline(rows: list[dict[str, Any]]) -> str:
    px = cheaper_inline_pixels(rows)
    return threshold(px) if px else "no measured size"


def section(p1: dict[str, Any], p2: dict[str, Any], args: argparse.Namespace, load: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    rows = [
        [
            f"{r['side']}x{r['side']}",
            str(r["pixels"]),
            f"{r['crop_us']:.1f}",
            f"{r['bitmap_us']:.1f}",
            f"{r['lz4_us']:.1f}",
            f"{r['lz4_ratio']:.2f}",
            f"{r['lz4_noise_us']:.1f}",
            f"{r['bitmap_trip']['trip_median_us']:.0f}",
            f"{r['lz4_trip']['trip_median_us']:.0f}",
            f"{r['lz4_trip']['reactor_cpu_us']:.0f}",
        ]
        for r in p1["rows"]
    ]
    gil = [
        [
            GIL_JOBS[name],
            f"{1e3 * p2[name]['parallel']['one_s']:.1f}",
            f"{1e3 * p2[name]['parallel']['serial_s']:.1f}",
            f"{1e3 * p2[name]['parallel']['parallel_s']:.1f}",
            f"{p2[name]['parallel']['ratio']:.2f}",
            f"{p2[name]['progress']['ratio']:.2f}",
        ]
        for name in GIL_JOBS
    ]
    h = p1["handoff"]
    lines = [
        f"<!-- {SECTION}:begin -->",
        "## Codec pool: the inline threshold and the GIL",
        "",
        f"Encodes smaller than `codecs.INLINE_PIXELS` (bitmap: {threshold(codecs.INLINE_PIXELS[codecs.BITMAP])}; lz4: "
        f"{threshold(codecs.INLINE_PIXELS[codecs.LZ4])}) run inline on the reactor; larger ones go to the codec pool. "
        "This measures, in one process on a running Twisted reactor (benchmarks/codec_pool.py), what a hand-off to a "
        "`ThreadPool(1, 2)` like the codec pool's costs (`deferToThreadPool` round trips of a no-op, one after the "
        f"other; {p1['sweeps']} sweeps, every figure the median over them) against what the encodes cost inline, for square crops of the demo desktop (its window with text; LZ4 also on noise, which it skips through fast). The reactor's share of a hand-off is its own thread's CPU "
        "(`time.thread_time`) over a batch of round trips divided by their number: submit, wake-up, callback, Deferred. "
        "Then whether the work releases the GIL.",
        "",
        f"- Date: {now:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()}; "
        f"shared: other processes (test suites) ran at the same time (load average {load} at the start)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), numpy {np.__version__}, lz4 {lz4_version()}",
        f"- Command: `{command_line()}`",
        "",
        f"A no-op hand-off: reactor CPU {h['reactor_cpu_us']:.1f} us per round trip (least of a batch "
        f"{h['reactor_cpu_min_us']:.1f} us), and {h['worker_cpu_us']:.1f} us on the pool's thread (Python: it holds the "
        f"GIL, which a busy reactor then waits for), round trip {h['trip_median_us']:.0f} us median ({h['trip_p90_us']:.0f} us p90); "
        f"in bursts of {BURST}: {p1['burst']['reactor_cpu_us']:.1f} us of reactor CPU a job.",
        "",
        md_table(
            [
                "size",
                "pixels",
                "Surface.crop µs (every drawable)",
                "bitmap encode µs",
                "lz4 encode µs (desktop)",
                "lz4 size / raw",
                "lz4 encode µs (noise)",
                "bitmap via pool: round trip µs",
                "lz4 via pool: round trip µs",
                "lz4 via pool: reactor CPU µs",
            ],
            rows,
        ),
        "",
        f"The GIL: a {p2['mib']:.0f} MiB buffer of tiled demo desktop ({p2['shape'][1]}x{p2['shape'][0]} pixels), worked "
        "on by one thread twice (serial) and by two threads once each at the same time (parallel); median of "
        f"{args.gil_repeats}. Python progress: a pure-Python loop's iterations on the main thread while another thread "
        "runs the job, counted only inside the job's calls, relative to the same loop's speed alone (0 = the call holds "
        "the GIL; 1.0 = released, on a free core).",
        "",
        md_table(["job", "one run ms", "serial ms", "parallel ms", "parallel / serial", "Python progress during the calls"], gil),
        "",
        *[f"- {s}" for s in findings(p1, p2)],
        f"<!-- {SECTION}:end -->",
    ]
    return "\n".join(lines)


def lz4_version() -> str:
    import lz4

    return getattr(lz4, "__version__", "?")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2000, help="no-op hand-offs (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="sweeps of part 1; medians are reported (default: %(default)s)")
    p.add_argument("--gil-mib", type=int, default=24, help="buffer size for the GIL check (default: %(default)s)")
    p.add_argument("--gil-repeats", type=int, default=7, help="repeats of the GIL check (default: %(default)s)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/performance.md")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    args = p.parse_args()
    load = load_average()

    async def run(reactor: Any) -> None:
        p1 = await part1(reactor, args)  # on the running reactor
        p2 = part2(args)  # plain threads; the reactor is idle meanwhile
        if args.json:
            Path(args.json).write_text(json.dumps({"part1": p1, "part2": p2}, indent=2))
        if not args.no_write:
            write_between(DOC, SECTION, section(p1, p2, args, load))
            print(f"wrote {DOC.relative_to(ROOT)}")

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)), [])  # exits the process when done


if __name__ == "__main__":
    main()
