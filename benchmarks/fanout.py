"""Fan-out benchmark: one changing display served to N protocol-level clients.

For each N (default 1, 2, 4, 8, 16, 32) a fresh server runs in a child process
(benchmarks/_server.py, built like `twistd spice`, demo source at --fps), N
lightweight clients in this process link MAIN and DISPLAY, ack, answer pings and
count DRAW_COPY messages. After every client has its first full frame and a
warm-up, a window of --seconds measures:

- server CPU (user+system of the child, all threads) per delivered update,
- updates per second delivered, per client and in total,
- encodes (render stats) versus sends (display channels' draws_sent), coalesced,
- peak server memory (ru_maxrss of the child).

It prints a table and writes the "Fan-out" section of docs/performance.md
(between <!-- fanout:begin --> and <!-- fanout:end -->; the rest of the file is kept).
Numbers are from one run on a noisy machine and are not asserted anywhere.

    .venv/bin/python benchmarks/fanout.py [--counts 1,2,4] [--seconds 5] [--fps 60] [--no-write]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark the checkout, not an installed copy

import argparse  # noqa: E402
import asyncio  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from spice_twisted.wire.client_link import link_message, ticket_message  # noqa: E402
from spice_twisted.wire.enums import (  # noqa: E402
    ChannelType,
    LinkError,
    MsgcCommon,
    MsgcDisplay,
    MsgcMain,
    MsgCommon,
    MsgDisplay,
    MsgMain,
)
from spice_twisted.wire.framer import Framer, HeaderWriter  # noqa: E402
from spice_twisted.wire.messages import CLIENT, LINK_HEADER, LINK_REPLY, SERVER, decode_body, encode_body  # noqa: E402
from spice_twisted.wire.schema import decode  # noqa: E402

SERVER_SCRIPT = Path(__file__).with_name("_server.py")
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- fanout:begin -->", "<!-- fanout:end -->"

MSG_SET_ACK = SERVER[(None, MsgCommon.SET_ACK)]
MSG_PING = SERVER[(None, MsgCommon.PING)]
MSGC_ACK_SYNC = CLIENT[(None, MsgcCommon.ACK_SYNC)]
MSGC_ACK = CLIENT[(None, MsgcCommon.ACK)]
MSGC_PONG = CLIENT[(None, MsgcCommon.PONG)]
MSGC_ATTACH = CLIENT[(ChannelType.MAIN, MsgcMain.ATTACH_CHANNELS)]
MSGC_DISPLAY_INIT = CLIENT[(ChannelType.DISPLAY, MsgcDisplay.INIT)]


# --- a minimal protocol-level client ------------------------------------------------------
def link_bytes(channel: ChannelType, connection_id: int) -> bytes:
    return link_message(channel, connection_id)


class Channel(asyncio.Protocol):
    """One channel connection: the link stage, then mini-header messages with acks and pongs."""

    def __init__(self, channel: ChannelType, connection_id: int, on_message: Callable[[int, bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        self.channel = channel
        self.connection_id = connection_id
        self.on_message = on_message
        self.linked: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._state = "reply"
        self._buf = bytearray()
        self.framer = Framer(mini=True, max_body=64 << 20)  # a full 1024x768 frame is ~3 MiB
        self.writer = HeaderWriter(mini=True)
        self.ack_window = 0
        self._ack_left = 0
        self.messages = 0
        self.bytes = 0
        self.closing = False

    def send(self, msg: Any, fields: dict[str, Any] | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.writer.frame(msg.id, encode_body(msg, fields or {})))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(link_bytes(self.channel, self.connection_id))

    def connection_lost(self, exc: Exception | None) -> None:
        err = ConnectionError(f"{self.channel.name} closed during the link") if not self.linked.done() else None
        if err is not None:
            self.linked.set_exception(err)
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, why: str) -> None:
        if not self.linked.done():
            self.linked.set_exception(ConnectionError(f"{self.channel.name} link failed: {why}"))
        assert self.transport is not None
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._state == "data":
            self._messages(data)
            return
        buf = self._buf
        buf += data
        if self._state == "reply":
            if len(buf) < LINK_HEADER.size:
                return
            hdr = decode(LINK_HEADER, bytes(buf[: LINK_HEADER.size]))
            need = LINK_HEADER.size + hdr["size"]
            if len(buf) < need:
                return
            reply = decode(LINK_REPLY, bytes(buf[LINK_HEADER.size : LINK_HEADER.size + LINK_REPLY.size]))
            del buf[:need]
            if reply["error"] != LinkError.OK:
                self._fail(LinkError(reply["error"]).name)
                return
            assert self.transport is not None
            self.transport.write(ticket_message(reply["pub_key"], b""))
            self._state = "result"
        if self._state == "result":
            if len(buf) < 4:
                return
            (result,) = struct.unpack_from("<I", buf)
            del buf[:4]
            if result != LinkError.OK:
                self._fail(LinkError(result).name)
                return
            self._state = "data"
            self.linked.set_result(None)
            leftover = bytes(buf)
            buf.clear()
            if leftover:
                self._messages(leftover)

    def _messages(self, data: bytes) -> None:
        self.bytes += len(data)
        for msg_type, body in self.framer.feed(data):
            self.messages += 1
            if msg_type == MsgCommon.SET_ACK:
                f = decode_body(MSG_SET_ACK, body)
                self.send(MSGC_ACK_SYNC, {"generation": f["generation"]})
                self.ack_window = self._ack_left = f["window"]
                continue  # like spice-gtk, count from the message after SET_ACK
            if msg_type == MsgCommon.PING:
                f = decode_body(MSG_PING, body)
                self.send(MSGC_PONG, {"id": f["id"], "timestamp": f["timestamp"]})
            else:
                self.on_message(msg_type, body)
            if self.ack_window:
                self._ack_left -= 1
                if self._ack_left == 0:
                    self.send(MSGC_ACK)
                    self._ack_left = self.ack_window

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class BenchClient:
    """One SPICE client: MAIN (session, pings) and DISPLAY (counts DRAW_COPY)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.session: asyncio.Future[int] = loop.create_future()
        self.first_frame: asyncio.Future[None] = loop.create_future()
        self.draws = 0
        self.main: Channel | None = None
        self.display: Channel | None = None

    def on_main(self, msg_type: int, body: bytes) -> None:
        if msg_type == MsgMain.INIT and not self.session.done():
            self.session.set_result(struct.unpack_from("<I", body)[0])

    def on_display(self, msg_type: int, body: bytes) -> None:
        if msg_type == MsgDisplay.DRAW_COPY:
            self.draws += 1
        elif msg_type == MsgDisplay.MARK and not self.first_frame.done():
            self.first_frame.set_result(None)  # the server sends MARK right after the full frame

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, self.main = await loop.create_connection(lambda: Channel(ChannelType.MAIN, 0, self.on_main), "127.0.0.1", port)
        await self.main.linked
        session_id = await self.session
        self.main.send(MSGC_ATTACH)
        _, self.display = await loop.create_connection(lambda: Channel(ChannelType.DISPLAY, session_id, self.on_display), "127.0.0.1", port)
        await self.display.linked
        self.display.send(
            MSGC_DISPLAY_INIT,
            {"pixmap_cache_id": 1, "pixmap_cache_size": 20 << 20, "glz_dictionary_id": 0, "glz_dictionary_window_size": 0},
        )

    def disconnected(self) -> bool:
        return any(ch is not None and ch.lost.done() and not ch.closing for ch in (self.main, self.display))

    def close(self) -> None:
        for ch in (self.display, self.main):
            if ch is not None:
                ch.close()


# --- the server child ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerChild:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.ready: dict[str, Any] = {}

    @classmethod
    async def start(cls, port: int, fps: float, log_path: Path) -> ServerChild:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SERVER_SCRIPT),
                "--fps",
                str(fps),
                "--",
                "--port",
                str(port),
                "--source",
                "demo",
                "--stats-interval",
                "0",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=str(ROOT),
            )
        child = cls(proc, log_path)
        ready = await child._read(30.0)
        if ready.get("event") != "ready":
            raise RuntimeError(f"server did not start: {ready}")
        child.ready = ready
        return child

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"server exited ({await self.proc.wait()}):\n{self.log_tail()}")
        return json.loads(line)

    async def command(self, cmd: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await self._read(timeout)
        if "error" in reply:
            raise RuntimeError(f"{cmd}: {reply['error']}")
        return reply

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if re.search(r"closing:|Traceback|Unhandled|Error|stalled", ln)]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.command("quit", timeout=10.0)
                await asyncio.wait_for(self.proc.wait(), 15.0)
            except (RuntimeError, TimeoutError, ConnectionError, BrokenPipeError):
                if self.proc.returncode is None:
                    self.proc.kill()  # only the child we started
                    await self.proc.wait()


# --- one measurement ------------------------------------------------------------------------
def parent_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def display_channels(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [ch for cl in stats["clients"] for ch in cl["channels"] if ch["channel"] == "display"]


async def measure(n: int, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    port = free_port()
    server = await ServerChild.start(port, args.fps, logdir / f"server-n{n}.log")
    clients: list[BenchClient] = []
    try:
        t = time.monotonic()
        clients = [BenchClient() for _ in range(n)]
        await asyncio.wait_for(asyncio.gather(*(c.connect(port) for c in clients)), 120.0)
        await asyncio.wait_for(asyncio.gather(*(c.first_frame for c in clients)), 60.0)
        connect_s = time.monotonic() - t
        await asyncio.sleep(args.warmup)

        s0 = await server.command("sample")
        c0, p0, t0 = [c.draws for c in clients], parent_cpu(), time.monotonic()
        await asyncio.sleep(args.seconds)
        s1 = await server.command("sample")
        c1, p1, t1 = [c.draws for c in clients], parent_cpu(), time.monotonic()

        profile = None
        if n in args.profile:
            await server.command("profile_start")
            await asyncio.sleep(args.seconds)
            profile = await server.command(f"profile_stop {args.profile_top}")
        disconnected = sum(c.disconnected() for c in clients)
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)
        await server.stop()

    elapsed = t1 - t0
    ready_rss = server.ready["rusage"]["maxrss_kib"]
    server_elapsed = s1["wall"] - s0["wall"]
    cpu = s1["rusage"]["cpu"] - s0["rusage"]["cpu"]
    per_client = [b - a for a, b in zip(c0, c1, strict=True)]
    delivered = sum(per_client)
    r0, r1 = s0["stats"]["render"], s1["stats"]["render"]
    encodes = r1["encodes"].get("bitmap", 0) - r0["encodes"].get("bitmap", 0)
    d0, d1 = display_channels(s0["stats"]), display_channels(s1["stats"])
    sends = sum(d["draws_sent"] for d in d1) - sum(d["draws_sent"] for d in d0)
    coalesced = sum(d["coalesced"] for d in d1) - sum(d["coalesced"] for d in d0)
    frames = (s1["source_frames"] or 0) - (s0["source_frames"] or 0)
    return {
        "clients": n,
        "seconds": elapsed,
        "server_cpu_s": cpu,
        "server_cpu_pct": 100.0 * cpu / server_elapsed,
        "client_cpu_pct": 100.0 * (p1 - p0) / elapsed,
        "delivered": delivered,
        "cpu_per_update_us": 1e6 * cpu / delivered if delivered else float("nan"),
        "updates_per_s_client": delivered / n / elapsed,
        "updates_per_s_client_min": min(per_client) / elapsed,
        "updates_per_s_total": delivered / elapsed,
        "source_frames": frames,
        "source_fps": frames / server_elapsed,
        "drawables": r1["drawables"] - r0["drawables"],
        "snapshots": r1["snapshots"] - r0["snapshots"],
        "encodes": encodes,
        "sends": sends,
        "sends_per_encode": sends / encodes if encodes else float("nan"),
        "coalesced": coalesced,
        "peak_rss_mib": s1["rusage"]["maxrss_kib"] / 1024.0,
        "idle_rss_mib": ready_rss / 1024.0,
        "rss_end_mib": (s1["rusage"]["rss_kib"] or 0) / 1024.0,
        "connect_s": connect_s,
        "join_snapshots": r0["snapshots"],  # full-surface drawables made while the N clients joined
        "join_encodes": r0["encodes"].get("bitmap", 0),
        "join_coalesced": sum(d["coalesced"] for d in d0),
        "server_clients_end": len(s1["stats"]["clients"]),
        "stalled_disconnects": s1["stats"]["stalled_disconnects"],
        "client_disconnects": disconnected,
        "link_refusals": s1["stats"]["link_refusals"],
        "server_log_problems": server.log_problems(),
        "profile": profile,
    }


# --- output ---------------------------------------------------------------------------------
COLUMNS = [
    ("clients", "N", "{:d}"),
    ("server_cpu_pct", "srv CPU %", "{:.0f}"),
    ("cpu_per_update_us", "us CPU/upd", "{:.0f}"),
    ("updates_per_s_client", "upd/s/client", "{:.1f}"),
    ("updates_per_s_client_min", "min client", "{:.1f}"),
    ("updates_per_s_total", "upd/s total", "{:.0f}"),
    ("source_fps", "src fps", "{:.1f}"),
    ("encodes", "encodes", "{:d}"),
    ("sends", "sends", "{:d}"),
    ("sends_per_encode", "sends/enc", "{:.2f}"),
    ("coalesced", "coalesced", "{:d}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("rss_end_mib", "RSS end MiB", "{:.0f}"),
    ("client_cpu_pct", "client CPU %", "{:.0f}"),
]


def print_table(results: list[dict[str, Any]]) -> None:
    cells = [[h for _, h, _ in COLUMNS]] + [[fmt.format(r[k]) for k, _, fmt in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def command_line() -> str:
    try:
        script = str(Path(sys.argv[0]).resolve().relative_to(Path.cwd()))
    except ValueError:
        script = sys.argv[0]
    return shlex.join([sys.executable, script, *sys.argv[1:]])


def findings(results: list[dict[str, Any]], fps: float) -> list[str]:
    """Sentences on what the numbers show, derived from them (so they stay true on a re-run)."""
    base = results[0]
    last = results[-1]
    out = []
    enc_rates = [r["encodes"] / r["seconds"] for r in results]
    spe = ", ".join(f"{r['sends_per_encode']:.1f}" for r in results)
    lo, hi = f"{min(enc_rates):.0f}", f"{max(enc_rates):.0f}"
    out.append(
        f"**Encode once.** The server encoded {lo if lo == hi else lo + '-' + hi} images per second for every N "
        f"(the demo commits about one changed rectangle per frame, plus the clock once a second), while sends grew "
        f"from {base['sends'] / base['seconds']:.0f}/s at N={base['clients']} to {last['sends'] / last['seconds']:.0f}/s "
        f"at N={last['clients']}: sends per encode tracks N ({spe}), "
        f"each drawable's DRAW_COPY body is built once and the same bytes are written to every client."
    )
    ratio = last["cpu_per_update_us"] / base["cpu_per_update_us"]
    out.append(
        f"**Cost per delivered update** fell from {base['cpu_per_update_us']:.0f} us of server CPU at N={base['clients']} "
        f"to {last['cpu_per_update_us']:.0f} us at N={last['clients']} ({ratio:.2f}x): the per-frame work (drawing the "
        f"source, copying the damaged pixels, encoding) is paid once and shared, and only queueing and writing are paid per client."
    )
    full = [r for r in results if r["updates_per_s_client_min"] >= 0.9 * r["source_fps"] and r["source_fps"] >= 0.9 * fps]
    short = [r for r in results if r not in full]
    if short:
        first = short[0]
        out.append(
            f"**Where it falls behind.** Up to N={full[-1]['clients'] if full else '-'} every client got (nearly) every frame. "
            f"At N={first['clients']} the source ran at {first['source_fps']:.0f} of {fps:g} fps and the slowest client "
            f"got {first['updates_per_s_client_min']:.0f} updates/s (server CPU {first['server_cpu_pct']:.0f}% of a core, "
            f"client process {first['client_cpu_pct']:.0f}%, {first['coalesced']} updates coalesced): a pipe that cannot keep up "
            f"coalesces (drops updates a newer one covers, and collapses a backlog of more than a screenful into one snapshot) "
            f"instead of queueing without bound, so its client gets fewer updates rather than growing lag."
        )
    else:
        out.append(
            f"**Headroom.** Every client received (nearly) every frame at every N, the source ran at {fps:g} fps throughout "
            f"and the server never used more than {max(r['server_cpu_pct'] for r in results):.0f}% of one core: this load "
            f"is far from the server's limit (raise `--fps` or the client count to find it)."
        )
    if last["clients"] > base["clients"]:
        slope = (last["server_cpu_s"] / last["seconds"] - base["server_cpu_s"] / base["seconds"]) / (
            last["updates_per_s_total"] - base["updates_per_s_total"]
        )
        out.append(
            f"**Marginal cost.** Between N={base['clients']} and N={last['clients']} each extra delivered update cost "
            f"about {1e6 * slope:.0f} us of server CPU (the slope of CPU seconds per second against updates per second); "
            f"the rest of the N={base['clients']} figure is the fixed cost of running the source and the reactor."
        )
    per_client = (last["peak_rss_mib"] - base["peak_rss_mib"]) / max(1, last["clients"] - base["clients"])
    out.append(
        f"**Memory.** Peak server RSS went from {base['peak_rss_mib']:.0f} MiB at N={base['clients']} to "
        f"{last['peak_rss_mib']:.0f} MiB at N={last['clients']} (about {per_client:.1f} MiB per extra client), "
        f"while RSS at the end of the window stayed at {min(r['rss_end_mib'] for r in results):.0f}-"
        f"{max(r['rss_end_mib'] for r in results):.0f} MiB for every N: the peak is the transient of joining, "
        f"not memory held per client while streaming. Each joiner is first sent the whole 1024x768 surface, a 3 MiB "
        f"DRAW_COPY. Clients joining in the same frame share one snapshot and its one encode ({last['join_snapshots']} "
        f"full-surface snapshots for the {last['clients']} joiners at N={last['clients']}), and a body that large is "
        f"written in 256 KiB pieces as each connection's transport asks for more, so no connection holds its own copy "
        f"of the whole frame."
    )
    return out


def fanout_section(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    base = results[0]
    now = datetime.datetime.now(datetime.UTC)
    abs_rows = [
        [
            str(r["clients"]),
            f"{r['server_cpu_pct']:.0f}",
            f"{r['cpu_per_update_us']:.0f}",
            f"{r['updates_per_s_client']:.1f}",
            f"{r['updates_per_s_client_min']:.1f}",
            f"{r['updates_per_s_total']:.0f}",
            f"{r['source_fps']:.1f}",
            str(r["encodes"]),
            str(r["sends"]),
            f"{r['sends_per_encode']:.2f}",
            str(r["coalesced"]),
            f"{r['idle_rss_mib']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['rss_end_mib']:.0f}",
        ]
        for r in results
    ]
    rel_rows = [
        [
            str(r["clients"]),
            f"{r['cpu_per_update_us'] / base['cpu_per_update_us']:.2f}",
            f"{(r['server_cpu_s'] / r['seconds']) / (base['server_cpu_s'] / base['seconds']):.2f}",
            f"{r['updates_per_s_total'] / base['updates_per_s_total']:.2f}",
            f"{(r['encodes'] / r['seconds']) / (base['encodes'] / base['seconds']):.2f}",
            f"{(r['sends'] / r['seconds']) / (base['sends'] / base['seconds']):.2f}",
            f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}",
        ]
        for r in results
    ]
    odd = []
    for r in results:
        if r["client_disconnects"] or r["stalled_disconnects"] or r["server_clients_end"] != r["clients"]:
            odd.append(
                f"N={r['clients']}: {r['client_disconnects']} client(s) disconnected, {r['stalled_disconnects']} stalled, "
                f"{r['server_clients_end']} clients left on the server."
            )
    lines = [
        BEGIN,
        "## Fan-out",
        "",
        "One changing display served to N clients at once. The server runs alone in a child process built like "
        f"`twistd spice --source demo` (the demo desktop, its ball moving at {args.fps:g} fps instead of the default 20); "
        "N protocol-level clients in the benchmark process link the main and display channels, send ACKs and PONGs, "
        "and count the DRAW_COPY messages they receive. After every client has its first full frame and "
        f"{args.warmup:g} s of warm-up, a {args.seconds:g} s window is measured: the server process's CPU time "
        "(user + system, all threads), the updates the clients received, and the server's own counters "
        "(`render.encodes.bitmap` for encodes, the display channels' `draws_sent` for sends, `coalesced`). "
        "Peak RSS is the server process's high-water mark (`ru_maxrss`); each N gets a fresh server.",
        "",
        f"- Date: {now:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- Command: `{command_line()}`",
        "- Reproduce from a checkout (after `scripts/setup.sh`): `.venv/bin/python benchmarks/fanout.py` "
        "(`--counts 1,2,4`, `--seconds 5`, `--fps 60`, `--no-write` to only print). The script imports the checkout's "
        "`spice_twisted`, not an installed copy.",
        "",
        "These are numbers from a single run on a small, shared machine (the clients share its cores with the server), "
        "so read the trends, not the digits. Nothing here is asserted by the test suite.",
        "",
        "### Relative to one client",
        "",
        md_table(
            [
                "clients",
                "server CPU per delivered update",
                "server CPU time per second",
                "updates/s delivered (total)",
                "encodes/s",
                "sends/s",
                "peak RSS",
            ],
            rel_rows,
        ),
        "",
        *[f"- {s}" for s in findings(results, args.fps)],
        "",
        "### Measured",
        "",
        md_table(
            [
                "clients",
                "server CPU %",
                "µs server CPU per delivered update",
                "updates/s per client",
                "slowest client updates/s",
                "updates/s total",
                "source fps",
                "encodes",
                "sends",
                "sends / encode",
                "coalesced",
                "peak RSS at start MiB",
                "peak RSS MiB",
                "RSS at end MiB",
            ],
            abs_rows,
        ),
        "",
        f"Encodes, sends and coalesced are counts over the {args.seconds:g} s window. Server CPU % is of one core "
        "(the reactor is one thread; small encodes run inline on it).",
    ]
    if odd:
        lines += ["", "Irregularities in this run: " + " ".join(odd)]
    lines.append(END)
    return "\n".join(lines)


def write_doc(section: str) -> None:
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = head + section + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        text = (
            "# Performance\n\n"
            "Measured numbers for spice-twisted, produced by the scripts in `benchmarks/`. Each section is\n"
            "generated by its script between `<!-- name:begin -->` and `<!-- name:end -->` comments, so a\n"
            "re-run replaces only its own section. They are single runs on one machine, not guarantees,\n"
            "and no test asserts them.\n\n" + section + "\n"
        )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def print_profile(r: dict[str, Any]) -> None:
    prof = r["profile"]
    print(f"\ncProfile of the server's reactor thread at N={r['clients']} ({prof['total']:.2f} s profiled, by own time):")
    for row in prof["top"]:
        print(f"  {row['tottime']:7.3f} s  {row['ncalls']:>8}  {row['function']}")


# --- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="1,2,4,8,16,32", help="client counts to run (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement window per count (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds after the first full frames (default: %(default)s)")
    p.add_argument("--fps", type=float, default=60.0, help="demo source frame rate (default: %(default)s)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/performance.md")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    p.add_argument(
        "--profile", default="", metavar="N[,N]", help="after the window at these counts, cProfile the server for another window"
    )
    p.add_argument("--profile-top", type=int, default=15, help="functions to show per profile (default: %(default)s)")
    args = p.parse_args(argv)
    args.counts = [int(x) for x in args.counts.split(",") if x]
    args.profile = {int(x) for x in args.profile.split(",") if x}
    if not args.counts or min(args.counts) < 1:
        p.error("--counts needs positive integers")
    return args


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="spice-fanout-") as tmp:
        for n in args.counts:
            t = time.monotonic()
            r = await measure(n, args, Path(tmp))
            results.append(r)
            note = ""
            if r["client_disconnects"] or r["stalled_disconnects"] or r["server_log_problems"]:
                note = f"  !! disconnects={r['client_disconnects']} stalled={r['stalled_disconnects']} log: {r['server_log_problems'][:3]}"
            print(
                f"N={n:>3}: {r['updates_per_s_client']:.1f} upd/s/client, {r['cpu_per_update_us']:.0f} us CPU/update, "
                f"encodes={r['encodes']} sends={r['sends']} (connect+first frame {r['connect_s']:.1f} s, run {time.monotonic() - t:.1f} s){note}",
                flush=True,
            )
    return results


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    results = asyncio.run(amain(args))
    print()
    print_table(results)
    for r in results:
        if r["profile"]:
            print_profile(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.no_write:
        write_doc(fanout_section(results, args))
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
