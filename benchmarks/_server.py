"""The real server in its own process for benchmarks, with a control line on stdin.

Built exactly as `twistd spice` builds it (Options -> make_service -> startService ->
reactor.run), except that the demo source may be given another frame rate. The
parent writes one command per line on stdin and reads one JSON line per reply on
stdout:

    sample               server_stats() plus this process's rusage (CPU s, peak RSS)
    profile_start        start cProfile (the reactor thread, where the work happens)
    profile_stop [TOP]   stop it; reply with the TOP (default 15) entries by own time
    quit                 stop the reactor

Usage: python benchmarks/_server.py [--fps FPS] -- <twistd spice options>
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark the checkout, not an installed copy

import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from twisted.internet import reactor, stdio  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.python import log  # noqa: E402

from spice_twisted.options import Options  # noqa: E402
from spice_twisted.service import make_service  # noqa: E402
from spice_twisted.sources.demo import DemoSource  # noqa: E402
from spice_twisted.stats import server_stats  # noqa: E402


def current_rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
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
        "maxrss_kib": ru.ru_maxrss,  # high-water mark since start (KiB on Linux)
        "rss_kib": current_rss_kib(),
    }


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

    def lineReceived(self, line: bytes) -> None:
        cmd, *args = line.decode().split() or [""]
        srv = self.server
        if cmd == "sample":
            self.reply(
                reply="sample",
                wall=time.monotonic(),
                rusage=rusage(),
                source_frames=getattr(srv.source, "frames", None),
                stats=server_stats(srv),
            )
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
    options = Options()
    options.parseOptions(argv)
    if fps is not None:
        if options["source"] != "demo":
            raise SystemExit("--fps only applies to --source demo")
        options["source-object"] = DemoSource(fps=fps)
    log.startLogging(sys.stderr, setStdout=False)
    top = make_service(options, reactor)
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    sys.stdout.write(json.dumps({"event": "ready", "pid": os.getpid(), "rusage": rusage()}) + "\n")
    sys.stdout.flush()
    stdio.StandardIO(Control(top))
    reactor.run()


if __name__ == "__main__":
    main()
