"""X11 source benchmark: a real Xvfb running scripted workloads, served to N light clients.

For each screen size (default 1280x800 and 1920x1080) an Xvfb runs; for each workload

- scroll:  an xterm filling with text as fast as it scrolls (`seq` in a loop),
- move:    a 400x300 window (xlogo) dragged around a text-covered desktop at 30 moves/s,
- repaint: the whole screen repainted 30 times a second (two desktop-like pictures in turn),
- idle:    a desktop where nothing changes,

and each client count (default 1, 4, 16), a fresh server (`twistd spice --source x11:...`,
in a child process: this script with --serve) is measured for --seconds while protocol-level
clients (the ones of benchmarks/fanout.py: main + display channels, ACKs, pongs) receive
everything. Reported per frame (a frame = one run of the render service's pacer, at most
--max-fps a second): capture CPU (the capture thread's own CPU time: X round trips it waits
on are not counted, the copies are), encode CPU (every codec call, in whatever thread), the
rest of the process (the reactor: hand-off, drawables, marshalling, sending, and the watch),
frames per second, the share of drawables that reached the slowest client, and bytes per
frame per client per codec (LZ4 for every N; raw bitmaps at N=1). Idle CPU is measured with
no client connected while the terminal scrolls (nothing must be read) and with clients on an
idle desktop.

andris (PyPI `andris`, Rust, one client at a time) is run on the same display and workloads
with one client as a reference, if `--andris PATH` names its binary (see docs/x11.md).

It writes the "Performance" section of docs/x11.md (between <!-- x11bench:begin --> and
<!-- x11bench:end -->). Single runs on a shared machine: trends, not guarantees.

    .venv/bin/python benchmarks/x11.py [--sizes 1280x800] [--counts 1,4] [--workloads scroll,idle]
        [--seconds 5] [--andris /path/to/andris] [--no-write] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))  # the checkout, its test support (Xvfb), fanout's clients

import argparse  # noqa: E402
import asyncio  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _report import command_line, cpu_model, md_table  # noqa: E402

DOC = ROOT / "docs" / "x11.md"
BEGIN, END = "<!-- x11bench:begin -->", "<!-- x11bench:end -->"
WORKLOADS = ("scroll", "move", "repaint", "idle")
TICKET = [b""]  # what the light clients send as the ticket (andris needs one)


# --- the server child (this script with --serve) ---------------------------------------------
def serve(argv: list[str]) -> None:
    """`twistd spice` as _server.py builds it, with every encode's CPU time counted."""
    import _server

    from spice_twisted import codecs
    from spice_twisted.options import Options

    lock = threading.Lock()
    encode_cpu = [0.0, 0]
    real_encode = codecs.encode

    def timed_encode(codec: str, pixels: Any) -> Any:
        t = time.thread_time()
        try:
            return real_encode(codec, pixels)
        finally:
            dt = time.thread_time() - t
            with lock:
                encode_cpu[0] += dt
                encode_cpu[1] += 1

    codecs.encode = timed_encode  # the codec pool looks it up at each call

    class Control(_server.Control):
        def lineReceived(self, line: bytes) -> None:
            if line.strip() == b"sample":
                from spice_twisted.stats import server_stats

                with lock:
                    enc = list(encode_cpu)
                self.reply(
                    reply="sample",
                    wall=time.monotonic(),
                    rusage=_server.rusage(),
                    encode_cpu=enc[0],
                    encodes=enc[1],
                    stats=server_stats(self.server),
                )
                return
            super().lineReceived(line)

    options = Options()
    options.parseOptions(argv)
    _server.serve(options, Control)


# --- workloads on the X display ----------------------------------------------------------------
class Workload:
    """Starts X programs (and a mover/painter thread) for one workload; stop() ends them.
    `move` (or `drag`, benchmarks/fanout.py's name for it): a `window`-sized xlogo moved
    round over an xterm of `text_lines` lines."""

    def __init__(self, x: Any, name: str, size: tuple[int, int], window: tuple[int, int] = (400, 300), text_lines: int = 2000) -> None:
        self.x, self.name, self.size = x, name, size
        self.window, self.text_lines = window, text_lines
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events = 0

    def start(self) -> None:
        w, h = self.size
        x = self.x
        x.run("xsetroot", "-solid", "#3a5f7f")
        if self.name == "scroll":
            x.spawn("xterm", "-geometry", "120x45+20+20", "-T", "bench-scroll", "-e", "sh", "-c", "while :; do seq 1 100000; done")
            self._wait_window("bench-scroll")
        elif self.name in ("move", "drag"):
            x.spawn(
                "xterm",
                "-geometry",
                f"{w // 7}x{h // 14}+0+0",
                "-T",
                "bench-text",
                "-e",
                "sh",
                "-c",
                f"ls -lR /usr/share | head -{self.text_lines}; sleep 3600",
            )
            x.spawn("xlogo", "-geometry", "{}x{}+100+100".format(*self.window), "-name", "bench-logo")
            self._wait_window("bench-text")
            wid = int(self._wait_window("bench-logo"))
            time.sleep(0.5)
            x.run("xdotool", "windowraise", str(wid))  # above the xterm, whichever mapped last
            self._thread = threading.Thread(target=self._mover, args=(wid, self.window), daemon=True)
        elif self.name == "repaint":
            self._thread = threading.Thread(target=self._painter, daemon=True)
        elif self.name == "idle":
            x.spawn("xterm", "-geometry", "80x24+50+50", "-T", "bench-idle")
            self._wait_window("bench-idle")
        time.sleep(1.0)  # programs drawn once
        if self._thread is not None:
            self._thread.start()

    def _wait_window(self, name: str) -> str:
        return self.x.run("xdotool", "search", "--sync", "--name", name).stdout.split()[0]

    def _conn(self) -> Any:
        import xcffib
        import xcffib.xproto

        return xcffib.connect(display=self.x.display)

    def _mover(self, wid: int, window: tuple[int, int] = (400, 300)) -> None:
        """Move the window (of `window` size) round the screen, 30 moves a second."""
        import xcffib.xproto

        conn = self._conn()
        w, h = self.size
        ww, wh = window
        cw = xcffib.xproto.ConfigWindow
        t0 = time.monotonic()
        while not self._stop.wait(1 / 30):
            a = (time.monotonic() - t0) * 1.2
            px, py = int((w - ww) / 2 * (1 + math.cos(a))), int((h - wh) / 2 * (1 + math.sin(a)))
            conn.core.ConfigureWindow(wid, cw.X | cw.Y, [px, py])
            conn.flush()
            self.events += 1
        conn.disconnect()

    def _painter(self) -> None:
        """Two full-screen pictures in server pixmaps, copied to the root in turn."""
        import xcffib.xproto

        conn = self._conn()
        w, h = self.size
        screen = conn.get_setup().roots[0]
        root = screen.root
        gc = conn.generate_id()
        conn.core.CreateGC(gc, root, 0, [])
        pixmaps = []
        rng = np.random.default_rng(11)
        for k in range(2):
            pm = conn.generate_id()
            conn.core.CreatePixmap(screen.root_depth, pm, root, w, h)
            img = desktop_picture(w, h, rng, k)
            rows = max(1, (1 << 18) // (w * 4))  # PutImage in pieces under the request size limit
            for top in range(0, h, rows):
                band = img[top : top + rows]
                conn.core.PutImage(
                    xcffib.xproto.ImageFormat.ZPixmap,
                    pm,
                    gc,
                    w,
                    band.shape[0],
                    0,
                    top,
                    0,
                    screen.root_depth,
                    len(band.tobytes()),
                    band.tobytes(),
                )
            pixmaps.append(pm)
        conn.flush()
        k = 0
        while not self._stop.wait(1 / 30):
            conn.core.CopyArea(pixmaps[k % 2], root, gc, 0, 0, 0, 0, w, h)
            conn.core.GetInputFocus().reply()  # one round trip: no backlog in the X server
            k += 1
            self.events += 1
        for pm in pixmaps:
            conn.core.FreePixmap(pm)
        conn.disconnect()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for p in self.x._children:
            if p.poll() is None:
                p.terminate()
                p.wait(5)
        self.x._children.clear()
        deadline = time.monotonic() + 10  # the next workload must not find these windows
        while self.x.run("xdotool", "search", "--name", "bench-", check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.1)


def desktop_picture(w: int, h: int, rng: np.random.Generator, k: int) -> np.ndarray:
    """B G R X: a gradient, flat 'windows', a noisy 'photo' and text-like stripes."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), dtype=np.uint8)
    img[..., 0] = (x * 255 // w + 60 * k) % 256
    img[..., 1] = y * 255 // h
    img[..., 2] = ((x + y) * 128 // (w + h) + 90 * k) % 256
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 300)), int(rng.integers(0, h - 200))
        img[y0 : y0 + 200, x0 : x0 + 300, :3] = rng.integers(0, 256, 3, dtype=np.uint8)
        img[y0 + 20 : y0 + 190 : 6, x0 + 10 : x0 + 280 : 2, :3] = 20  # "text"
    pw, ph = w // 4, h // 4
    img[h // 2 : h // 2 + ph, w // 2 : w // 2 + pw, :3] = rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)
    return img


# --- clients -----------------------------------------------------------------------------------
def make_client_class() -> Any:
    import fanout

    from spice_twisted.wire.client_link import link_message
    from spice_twisted.wire.enums import ChannelType, DisplayCap, ImageType, MsgDisplay

    class CapsChannel(fanout.Channel):
        def __init__(self, *a: Any, caps: tuple[int, ...] = (), **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.caps = caps

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(link_message(self.channel, self.connection_id, channel_caps=self.caps))

    if not getattr(fanout, "_x11_ticket", False):  # fanout's channels send an empty ticket: let them send ours
        real_ticket = fanout.ticket_message
        fanout.ticket_message = lambda key, _password: real_ticket(key, TICKET[0])
        fanout._x11_ticket = True

    class X11BenchClient(fanout.BenchClient):
        """fanout's client; display caps say whether it decodes LZ4; counts all draw messages."""

        def __init__(self, lz4: bool) -> None:
            super().__init__(lz4, ImageType.LZ4 if lz4 else ImageType.BITMAP)  # (`expect` is fanout's check, not used here)
            self.lz4 = lz4

        def on_display(self, msg_type: int, body: bytes) -> None:
            if msg_type >= 302 and msg_type != MsgDisplay.SURFACE_CREATE and msg_type != MsgDisplay.SURFACE_DESTROY:
                self.draws += 1
            elif msg_type == MsgDisplay.MARK and not self.first_frame.done():
                self.first_frame.set_result(None)

        async def connect(self, port: int) -> None:
            loop = asyncio.get_running_loop()
            caps = (DisplayCap.LZ4_COMPRESSION,) if self.lz4 else ()
            _, self.main = await loop.create_connection(lambda: self._channel(ChannelType.MAIN, 0, self.on_main, ()), "127.0.0.1", port)
            await self.main.linked
            session_id = await self.session
            self.main.send(fanout.MSGC_ATTACH)
            _, self.display = await loop.create_connection(
                lambda: self._channel(ChannelType.DISPLAY, session_id, self.on_display, caps), "127.0.0.1", port
            )
            await self.display.linked
            self.display.send(
                fanout.MSGC_DISPLAY_INIT,
                {"pixmap_cache_id": 1, "pixmap_cache_size": 20 << 20, "glz_dictionary_id": 1, "glz_dictionary_window_size": 0},
            )

        def _channel(self, ctype: Any, cid: int, on_message: Any, caps: tuple[int, ...]) -> Any:
            return CapsChannel(ctype, cid, on_message, caps=caps)

        @property
        def bytes(self) -> int:
            return self.display.bytes if self.display is not None else 0

    return X11BenchClient


# --- one measurement ---------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_child(argv: list[str], log_path: Path, limit: int = 1 << 16) -> Any:
    """A benchmark server child (`argv`), its stderr to `log_path`; returns once it is ready.
    `limit`: the longest stdout line it may write (a stats reply can be large)."""
    import fanout

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=str(ROOT), limit=limit
        )
    child = fanout.ServerChild(proc, log_path)
    ready = await child._read(30.0)
    if ready.get("event") != "ready":
        raise RuntimeError(f"server did not start: {ready}")
    child.ready = ready
    return child


def delta(a: dict[str, Any], b: dict[str, Any], *path: str) -> float:
    for k in path:
        a, b = a[k], b[k]
    return float(b) - float(a)


async def measure(x: Any, workload: str, n: int, lz4: bool, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    import fanout

    port = fanout.free_port()
    size = x.size()
    wl = Workload(x, workload, size)
    wl.start()
    server = await start_child(
        [
            sys.executable,
            __file__,
            "--serve",
            "--",
            "--port",
            str(port),
            "--admin-port",
            "0",
            "--ping-interval",
            "600",
            "--source",
            f"x11:{x.display}",
            "--disable-ticketing",
            "--max-fps",
            str(args.max_fps),
            "--image-compression",
            "lz4" if lz4 else "off",
        ],
        logdir / f"server-{workload}-{n}.log",
    )
    Client = make_client_class()
    clients = [Client(lz4) for _ in range(n)]
    try:
        if n:
            await asyncio.wait_for(asyncio.gather(*(c.connect(port) for c in clients)), 120.0)
            await asyncio.wait_for(asyncio.gather(*(c.first_frame for c in clients)), 60.0)
        await asyncio.sleep(args.warmup)
        s0 = await server.command("sample")
        c0 = [(c.draws, c.bytes) for c in clients]
        ev0, t0 = wl.events, time.monotonic()
        await asyncio.sleep(args.seconds)
        s1 = await server.command("sample")
        c1 = [(c.draws, c.bytes) for c in clients]
        ev1, t1 = wl.events, time.monotonic()
        disconnected = sum(c.disconnected() for c in clients)
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)
        await server.stop()
        wl.stop()
    secs = s1["wall"] - s0["wall"]
    cpu = delta(s0, s1, "rusage", "cpu")
    cap0, cap1 = s0["stats"]["source_state"]["capture"], s1["stats"]["source_state"]["capture"]
    cap_cpu = cap1["cpu_s"] - cap0["cpu_s"]
    enc_cpu = s1["encode_cpu"] - s0["encode_cpu"]
    frames = delta(s0, s1, "stats", "render", "frames")
    drawables = delta(s0, s1, "stats", "render", "drawables")
    snapshots = delta(s0, s1, "stats", "render", "snapshots")
    draws = [b[0] - a[0] for a, b in zip(c0, c1, strict=True)]
    nbytes = [b[1] - a[1] for a, b in zip(c0, c1, strict=True)]
    per = 1000.0 / frames if frames else float("nan")
    return {
        "size": f"{size[0]}x{size[1]}",
        "workload": workload,
        "clients": n,
        "codec": "lz4" if lz4 else "bitmap",
        "seconds": secs,
        "cpu_pct": 100.0 * cpu / secs,
        "capture_cpu_pct": 100.0 * cap_cpu / secs,
        "frames": frames,
        "fps": frames / secs,
        "workload_events_per_s": (ev1 - ev0) / (t1 - t0),
        "capture_ms_per_frame": cap_cpu * per,
        "encode_ms_per_frame": enc_cpu * per,
        "rest_ms_per_frame": (cpu - cap_cpu - enc_cpu) * per,
        "total_ms_per_frame": cpu * per,
        "px_read_per_frame": (cap1["pixels"] - cap0["pixels"]) / frames if frames else float("nan"),
        "capture_reads": cap1["frames"] - cap0["frames"],
        "drawables_per_frame": drawables / frames if frames else float("nan"),
        # drawables and the snapshots of the same window (a pipe that fell behind gets a refresh)
        "delivered_min": (min(draws) / (drawables + snapshots) if drawables else 1.0) if n else float("nan"),
        "kib_per_frame_client": (sum(nbytes) / n / frames / 1024.0) if n and frames else float("nan"),
        "kib_per_s_client": (sum(nbytes) / n / secs / 1024.0) if n else 0.0,
        "shm": cap1["shm"],
        "disconnected": disconnected,
    }


async def measure_andris(x: Any, binary: str, workload: str, args: argparse.Namespace, logdir: Path, clients_n: int = 1) -> dict[str, Any]:
    import fanout

    port = fanout.free_port()
    ticket = logdir / "andris-ticket"
    ticket.write_text("bench\n")
    ticket.chmod(0o600)
    size = x.size()
    wl = Workload(x, workload, size)
    wl.start()
    log = open(logdir / f"andris-{workload}.log", "wb")
    argv = [
        binary,
        "--listen",
        f"127.0.0.1:{port}",
        "--ticket-file",
        str(ticket),
        "--display",
        x.display,
        "--no-audio",
        "--jpeg-quality",
        "0",
        "--frame-interval-ms",
        str(round(1000 / args.max_fps)),
    ]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log)
    Client = make_client_class()
    clients = [Client(True) for _ in range(clients_n)]
    TICKET[0] = b"bench"
    try:
        await asyncio.sleep(1.0)
        if clients_n:
            await asyncio.wait_for(asyncio.gather(*(c.connect(port) for c in clients)), 60.0)
            await asyncio.wait_for(asyncio.gather(*(c.first_frame for c in clients)), 60.0)
        await asyncio.sleep(args.warmup)
        cpu0, t0, c0 = proc_cpu(proc.pid), time.monotonic(), [(c.draws, c.bytes) for c in clients]
        await asyncio.sleep(args.seconds)
        cpu1, t1, c1 = proc_cpu(proc.pid), time.monotonic(), [(c.draws, c.bytes) for c in clients]
    finally:
        for c in clients:
            c.close()
        TICKET[0] = b""
        proc.terminate()
        await proc.wait()
        log.close()
        wl.stop()
    secs = t1 - t0
    draws = [b[0] - a[0] for a, b in zip(c0, c1, strict=True)]
    nbytes = [b[1] - a[1] for a, b in zip(c0, c1, strict=True)]
    return {
        "size": f"{size[0]}x{size[1]}",
        "workload": workload,
        "clients": clients_n,
        "cpu_pct": 100.0 * (cpu1 - cpu0) / secs,
        "draws_per_s": (sum(draws) / clients_n / secs) if clients_n else 0.0,
        "kib_per_s_client": (sum(nbytes) / clients_n / secs / 1024.0) if clients_n else 0.0,
    }


# --- output ------------------------------------------------------------------------------------


def f(v: float, fmt: str = "{:.1f}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def section(
    results: list[dict[str, Any]], idle: list[dict[str, Any]], andris: list[dict[str, Any]], andris_note: str, args: argparse.Namespace
) -> str:
    now = datetime.datetime.now(datetime.UTC)
    rows = [
        [
            r["size"],
            r["workload"],
            str(r["clients"]),
            r["codec"],
            f(r["fps"]),
            f(r["cpu_pct"], "{:.1f}"),
            f(r["capture_ms_per_frame"], "{:.2f}"),
            f(r["encode_ms_per_frame"], "{:.2f}"),
            f(r["rest_ms_per_frame"], "{:.2f}"),
            f(r["px_read_per_frame"] / 1000.0, "{:.0f}"),
            f(r["kib_per_frame_client"], "{:.0f}"),
            f(r["kib_per_s_client"], "{:.0f}"),
            f(100 * r["delivered_min"], "{:.0f}"),
        ]
        for r in results
    ]
    idle_rows = [
        [r["size"], r["what"], str(r["clients"]), f(r["cpu_pct"], "{:.2f}"), f(r["capture_cpu_pct"], "{:.2f}"), str(r["capture_reads"])]
        for r in idle
    ]
    lines = [
        BEGIN,
        "## Performance",
        "",
        "Measured by `benchmarks/x11.py`: a real Xvfb (MIT-SHM on) running scripted workloads, served by a fresh server "
        f"(`--max-fps {args.max_fps:g}`) per run to N protocol-level clients (main and display channels, ACKs and pongs; "
        f"the clients of `benchmarks/fanout.py`). After the first full frame and {args.warmup:g} s of warm-up, "
        f"{args.seconds:g} s are measured. A *frame* is one run of the render service's pacer (damage batched at "
        "`--max-fps`); per frame: **capture** = the capture thread's own CPU (DAMAGE/XFIXES requests, ShmGetImage, "
        "the copy into the hand-off; the X server's own work is not ours), **encode** = every codec call's CPU (any "
        "thread), **rest** = the rest of the server process (the reactor applying the hand-off, cutting drawables, "
        "marshalling and writing to every client). *px read* is what the damage made us read; *delivered* is the share of "
        "drawables the slowest client received (the rest were coalesced: covered by newer ones).",
        "",
        f"- Date: {now:%Y-%m-%d %H:%M} UTC; machine: {len(os.sched_getaffinity(0))} CPUs, {cpu_model()}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- Command: `{command_line('python')}`",
        "- A single run on a small machine shared with other work (the clients and the X server share its cores with "
        "the server): read the trends, not the digits. Nothing here is asserted by the tests.",
        "",
        md_table(
            [
                "screen",
                "workload",
                "clients",
                "codec",
                "fps",
                "server CPU %",
                "capture ms/frame",
                "encode ms/frame",
                "rest ms/frame",
                "kpx read/frame",
                "KiB/frame/client",
                "KiB/s/client",
                "delivered %",
            ],
            rows,
        ),
        "",
        "### Idle",
        "",
        md_table(["screen", "what", "clients", "server CPU %", "capture thread CPU %", "capture reads"], idle_rows),
    ]
    lines += ["", "### andris (reference)", "", andris_note]
    if andris:
        arows = [
            [
                a["size"],
                a["workload"],
                str(a["clients"]),
                f(a["cpu_pct"], "{:.2f}"),
                f(a["draws_per_s"], "{:.0f}"),
                f(a["kib_per_s_client"], "{:.0f}"),
            ]
            for a in andris
        ]
        lines += ["", md_table(["screen", "workload", "clients", "andris CPU %", "draw messages/s", "KiB/s/client"], arows)]
    lines.append(END)
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# The X11 source\n"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc = head + text + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(doc)


# --- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1280x800,1920x1080")
    p.add_argument("--counts", default="1,4,16")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--max-fps", type=float, default=30.0)
    p.add_argument("--andris", metavar="PATH", help="the andris binary (pip install andris into its own venv)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/x11.md")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    args.sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    args.counts = [int(v) for v in args.counts.split(",") if v]
    args.workloads = [w for w in args.workloads.split(",") if w]
    bad = set(args.workloads) - set(WORKLOADS)
    if bad:
        p.error(f"unknown workloads {sorted(bad)}")
    return args


async def amain(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    from support.xvfb import Xvfb

    results, idle, andris = [], [], []
    with tempfile.TemporaryDirectory(prefix="spice-x11bench-") as tmp:
        tmpdir = Path(tmp)
        for size in args.sizes:
            x = Xvfb(tmpdir, size=size, max_size=size)
            try:
                for workload in args.workloads:
                    runs = [(n, True) for n in args.counts] + ([(1, False)] if 1 in args.counts else [])
                    for n, lz4 in runs:
                        r = await measure(x, workload, n, lz4, args, tmpdir)
                        results.append(r)
                        print(
                            f"{r['size']} {workload:8s} N={n:<2d} {r['codec']:6s} fps={r['fps']:5.1f} cpu={r['cpu_pct']:5.1f}% "
                            f"capture={r['capture_ms_per_frame']:.2f} encode={r['encode_ms_per_frame']:.2f} rest={r['rest_ms_per_frame']:.2f} ms/frame "
                            f"KiB/frame={r['kib_per_frame_client']:.0f} delivered={r['delivered_min']:.2f} disc={r['disconnected']}",
                            flush=True,
                        )
                    if args.andris:
                        a = await measure_andris(x, args.andris, workload, args, tmpdir)
                        andris.append(a)
                        print(
                            f"{a['size']} {workload:8s} andris N=1 cpu={a['cpu_pct']:.1f}% draws/s={a['draws_per_s']:.0f} KiB/s={a['kib_per_s_client']:.0f}",
                            flush=True,
                        )
                # idle: no client while the terminal scrolls (nothing may be read), and clients on an idle desktop
                idle_runs = (
                    ("no client, terminal scrolling", "scroll", 0),
                    ("no client, idle desktop", "idle", 0),
                    ("idle desktop", "idle", max(args.counts)),
                )
                for what, workload, n in idle_runs:
                    r = await measure(x, workload, n, True, args, tmpdir)
                    r["what"] = what
                    idle.append(r)
                    print(
                        f"{r['size']} idle: {what} N={n}: cpu={r['cpu_pct']:.2f}% capture={r['capture_cpu_pct']:.2f}% reads={r['capture_reads']}",
                        flush=True,
                    )
                if args.andris:
                    for what, workload, n in idle_runs:
                        a = await measure_andris(x, args.andris, workload, args, tmpdir, clients_n=min(n, 1))
                        a["workload"] = what
                        andris.append(a)
                        print(f"{a['size']} andris idle ({what}, N={a['clients']}): cpu={a['cpu_pct']:.2f}%", flush=True)
            finally:
                x.stop()
    return results, idle, andris


def main() -> None:
    if "--serve" in sys.argv:
        argv = sys.argv[sys.argv.index("--") + 1 :]
        serve(argv)
        return
    args = parse_args()
    started = time.monotonic()
    results, idle, andris = asyncio.run(amain(args))
    if args.andris:
        note = (
            f"`andris` 0.1.0 from PyPI (`{args.andris}`), run as `andris --display :N --no-audio --jpeg-quality 0 "
            f"--frame-interval-ms {round(1000 / args.max_fps)}` (lossless, the same frame cap), on the same Xvfb and "
            "workloads, with one client (it serves one client at a time). Its frames are not ours, so the comparison is "
            "process CPU, draw messages and bytes per second."
        )
    else:
        note = "Not run this time (`--andris PATH` runs it)."
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "idle": idle, "andris": andris}, indent=2))
    if not args.no_write:
        write_doc(section(results, idle, andris, note, args))
        print(f"wrote {DOC.relative_to(ROOT)}")
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
