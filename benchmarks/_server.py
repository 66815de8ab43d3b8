"""The real server in its own process for benchmarks, with a control line on stdin.

Built exactly as `twistd spice` builds it (Options -> make_service -> startService ->
reactor.run), except that the demo source may be given another frame rate. The
parent writes one command per line on stdin and reads one JSON line per reply on
stdout:

    sample               server_stats(), this process's rusage (CPU s of all threads), its
                         peak RSS (VmHWM) and RSS, the reactor thread's own CPU time, and
                         the frame timer
    pause / resume       stop / restart the source's changes (the demo's ball and clock)
    digest               sha256 of the primary surface's colour bytes (B, G, R; X ignored)
    small_updates COUNT PER_TURN SIZE
                         pause the source, then draw COUNT squares of SIZE x SIZE pixels at
                         pseudo-random places, each followed by render.damage(rect) and
                         render.flush() (so each is its own frame), PER_TURN of them per
                         reactor turn (callLater(0) between turns); reply when all are done
                         with the CPU, wall and frame-timer deltas of the run and the
                         codec pool's peak backlog (encodes queued or running, per turn)
    profile_start        start cProfile (the reactor thread, where the work happens)
    profile_stop [TOP]   stop it; reply with the TOP (default 15) entries by own time
    quit                 stop the reactor

The frame timer: `RenderService._frame` (one commit: paint hooks, damage -> drawables,
inline encodes and encode submissions, the push into every pipe; the marshal and write
of each client follow in send turns, outside it) is wrapped before the service is built, so every frame's reactor time
is summed with `time.perf_counter`, counted, and its maximum kept.

--inline CODEC=PIXELS (repeatable) overrides codecs.INLINE_PIXELS in this process, to
measure another inline threshold without editing the server.

Usage: python benchmarks/_server.py [--fps FPS] [--inline CODEC=PIXELS]... -- <twistd spice options>
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark the checkout, not an installed copy

import cProfile  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from twisted.internet import reactor, stdio  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.python import log  # noqa: E402

from spice_twisted import codecs  # noqa: E402
from spice_twisted.options import Options  # noqa: E402
from spice_twisted.render.rect import Rect  # noqa: E402
from spice_twisted.render.service import RenderService  # noqa: E402
from spice_twisted.service import make_service  # noqa: E402
from spice_twisted.sources.demo import DemoSource  # noqa: E402
from spice_twisted.stats import server_stats  # noqa: E402


def proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rusage() -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return {
        "utime": ru.ru_utime,
        "stime": ru.ru_stime,
        "cpu": ru.ru_utime + ru.ru_stime,
        # ru_maxrss is NOT this process's own peak on Linux: exec keeps the larger of it and the
        # RSS of the forked parent copy (the benchmark process, grown by its clients' framebuffers).
        "maxrss_kib": ru.ru_maxrss,
        "hwm_kib": proc_status_kib("VmHWM"),  # this address space's own high-water mark
        "rss_kib": proc_status_kib("VmRSS"),
    }


class FrameTimer:
    """Reactor time spent in RenderService._frame: total, count, maximum."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.max = 0.0

    def install(self) -> None:
        frame = RenderService._frame
        timer = self

        @functools.wraps(frame)
        def timed_frame(render: RenderService) -> None:
            t = time.perf_counter()
            try:
                frame(render)
            finally:
                dt = time.perf_counter() - t
                timer.count += 1
                timer.seconds += dt
                if dt > timer.max:
                    timer.max = dt

        # Patched on the class before the service exists, so the pacer's bound method is this one.
        RenderService._frame = timed_frame  # type: ignore[method-assign]

    def read(self) -> dict[str, Any]:
        return {"count": self.count, "seconds": self.seconds, "max": self.max}


FRAMES = FrameTimer()


def top_functions(prof: cProfile.Profile, top: int) -> list[dict[str, Any]]:
    st = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():  # type: ignore[attr-defined]
        short = filename
        for marker in ("/site-packages/", "/spice_twisted/", "/lib/python3"):
            if marker in filename:
                short = filename[filename.index(marker) + 1 :]
                break
        rows.append({"function": f"{short}:{line}({name})", "ncalls": ncalls, "tottime": tottime, "cumtime": cumtime})
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:top]


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, top: Any) -> None:
        self.top = top
        self.server = top.spice_server
        self.profile: cProfile.Profile | None = None

    def reply(self, **obj: Any) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")

    def counters(self) -> dict[str, Any]:
        """What the run deltas are computed from; read on the reactor thread."""
        return {
            "wall": time.monotonic(),
            "rusage": rusage(),
            "reactor_cpu": time.thread_time(),  # this (the reactor) thread only
            "frame_timer": FRAMES.read(),
        }

    def digest(self) -> dict[str, Any]:
        px = self.server.render.primary.pixels
        return {"sha256": hashlib.sha256(px[..., :3].tobytes()).hexdigest(), "width": px.shape[1], "height": px.shape[0]}

    def small_updates(self, count: int, per_turn: int, size: int) -> None:
        srv = self.server
        render = srv.render
        srv.source.paused = True  # only our squares change the surface now
        rng = random.Random(8)
        before = self.counters()
        state = {"done": 0, "turns": 0, "step_seconds": 0.0, "peak_backlog": 0, "peak_rss_kib": 0}
        team = getattr(render.pool.pool, "_team", None)  # Twisted's ThreadPool keeps its queue there

        def backlog() -> int:
            if team is None:
                return -1
            st = team.statistics()
            return st.backloggedWorkCount + st.busyWorkerCount

        def step() -> None:
            t = time.perf_counter()
            n = min(per_turn, count - state["done"])
            px = render.primary.pixels
            w, h = render.width, render.height
            for _ in range(n):
                i = state["done"]
                x, y = rng.randrange(0, w - size + 1), rng.randrange(0, h - size + 1)
                px[y : y + size, x : x + size, :3] = ((i * 37) & 255, (i * 91) & 255, (i * 13) & 255)
                render.damage(Rect(x, y, x + size, y + size))
                render.flush()
                state["done"] = i + 1
            state["turns"] += 1
            state["step_seconds"] += time.perf_counter() - t
            state["peak_backlog"] = max(state["peak_backlog"], backlog())  # encodes queued or running
            if state["done"] < count:
                reactor.callLater(0, step)
            else:
                self.reply(
                    reply="small_updates",
                    updates=state["done"],
                    turns=state["turns"],
                    step_seconds=state["step_seconds"],
                    peak_pool_backlog=state["peak_backlog"],
                    before=before,
                    after=self.counters(),
                    stats=server_stats(srv),
                )

        reactor.callLater(0, step)

    def lineReceived(self, line: bytes) -> None:
        cmd, *args = line.decode().split() or [""]
        srv = self.server
        if cmd == "sample":
            self.reply(
                reply="sample",
                **self.counters(),
                source_frames=getattr(srv.source, "frames", None),
                pool_threads=srv.render.pool.pool.max,
                stats=server_stats(srv),
            )
        elif cmd == "pause":
            srv.source.paused = True
            self.reply(reply="pause")
        elif cmd == "resume":
            srv.source.paused = False
            self.reply(reply="resume")
        elif cmd == "digest":
            self.reply(reply="digest", **self.digest())
        elif cmd == "small_updates":
            count, per_turn, size = (int(a) for a in args[:3])
            self.small_updates(count, per_turn, size)
        elif cmd == "profile_start":
            self.profile = cProfile.Profile()
            self.profile.enable()
            self.reply(reply="profile_start")
        elif cmd == "profile_stop":
            if self.profile is None:
                self.reply(reply="profile_stop", error="not profiling")
                return
            self.profile.disable()
            total = sum(v[2] for v in pstats.Stats(self.profile, stream=io.StringIO()).stats.values())  # type: ignore[attr-defined]
            self.reply(reply="profile_stop", total=total, top=top_functions(self.profile, int(args[0]) if args else 15))
            self.profile = None
        elif cmd == "quit":
            self.reply(reply="quit")
            reactor.stop()
        else:
            self.reply(reply=cmd, error="unknown command")

    def connectionLost(self, reason: Any = None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    argv = sys.argv[1:]
    fps: float | None = None
    if "--" in argv:
        ours, argv = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
        if "--fps" in ours:
            fps = float(ours[ours.index("--fps") + 1])
        for i, arg in enumerate(ours):
            if arg == "--inline":
                codec, pixels = ours[i + 1].split("=")
                if codec not in codecs.INLINE_PIXELS:
                    raise SystemExit(f"--inline: no codec {codec!r}")
                codecs.INLINE_PIXELS[codec] = int(pixels)  # read at every submit (render/codec_pool.py)
    options = Options()
    options.parseOptions(argv)
    if fps is not None:
        if options["source"] != "demo":
            raise SystemExit("--fps only applies to --source demo")
        options["source-object"] = DemoSource(fps=fps)
    FRAMES.install()
    serve(options, Control)


def serve(options: Options, control: type[Control]) -> None:
    """Build the service as `twistd spice` does, say "ready" on stdout, take `control` lines
    on stdin, run the reactor (the benchmarks' server children all end here)."""
    log.startLogging(sys.stderr, setStdout=False)
    top = make_service(options, reactor)
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    sys.stdout.write(json.dumps({"event": "ready", "pid": os.getpid(), "rusage": rusage()}) + "\n")
    sys.stdout.flush()
    stdio.StandardIO(control(top))
    reactor.run()


if __name__ == "__main__":
    main()
