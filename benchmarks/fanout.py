"""Fan-out benchmark: one changing display served to N protocol-level clients, raw and LZ4.

Part `fanout`: for each image mode (default raw and lz4) and each N (default 1, 4, 16,
32) a fresh server runs in a child process (benchmarks/_server.py, built like
`twistd spice`, demo source at --fps, frames at --max-fps), N lightweight clients in
this process link MAIN and DISPLAY, ack, answer pings, and decode every DRAW_COPY they
get into their own framebuffer (raw bitmaps, or LZ4 as spice-gtk decodes it; the image
type must be the one the mode promises). raw clients do not advertise
DISPLAY_CAP_LZ4_COMPRESSION (5); lz4 clients do; `off` clients do but the server runs
with --image-compression off. After every client has its first full frame and a
warm-up, a window of --seconds measures:

- server CPU (user+system of the child, all threads) per delivered update,
- the reactor thread's own CPU, and reactor time per commit (RenderService._frame,
  timed inside the child),
- updates per second delivered, per client and in total,
- encodes per codec and how many ran on the codec pool's threads, versus sends,
- peak server memory (VmHWM of the child; its ru_maxrss would start at this process's RSS).
Then the source is paused and each client's framebuffer is compared with the server's
surface (exact or not).

Part `stalled`: one reading client, and 0 or --stalled (default 4) clients that link
main and display, send DISPLAY_INIT with a small SO_RCVBUF and never read again. The
child draws --updates (default 20,000) 4x4 squares, each its own frame (damage +
flush, 200 per reactor turn). Measured: server CPU, reactor CPU, reactor time per
frame, and the ratio of each with stalled clients to without; the stalled pipes'
peaks against their bounds; the reader exact at the end.

It prints tables and writes the "Fan-out" and "Stalled clients" sections of
docs/performance.md (between <!-- fanout:begin --> / <!-- fanout:end --> and
<!-- fanout-stalled:begin --> / <!-- fanout-stalled:end -->; the rest of the file is
kept, and so is the archived <!-- fanout-v1:begin --> block inside the fan-out section).
Numbers are from one run on a noisy machine and are not asserted anywhere.

    .venv/bin/python benchmarks/fanout.py [--parts fanout,stalled] [--modes raw,lz4]
        [--counts 1,4,16,32] [--seconds 4] [--fps 60] [--max-fps 60] [--updates 20000] [--no-write]
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
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import lz4.block  # noqa: E402
import numpy as np  # noqa: E402
from _report import command_line, cpu_model, load_average, md_table  # noqa: E402

from spice_twisted.wire.client_link import link_message, ticket_message  # noqa: E402
from spice_twisted.wire.enums import (  # noqa: E402
    BitmapFlags,
    BitmapFormat,
    ChannelType,
    DisplayCap,
    ImageType,
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
FANOUT, STALLED, ARCHIVE, X11 = "fanout", "fanout-stalled", "fanout-v1", "fanout-x11"

MSG_SET_ACK = SERVER[(None, MsgCommon.SET_ACK)]
MSG_PING = SERVER[(None, MsgCommon.PING)]
MSG_DRAW_COPY = SERVER[(ChannelType.DISPLAY, MsgDisplay.DRAW_COPY)]
MSG_DRAW_FILL = SERVER[(ChannelType.DISPLAY, MsgDisplay.DRAW_FILL)]
MSG_COPY_BITS = SERVER[(ChannelType.DISPLAY, MsgDisplay.COPY_BITS)]
MSG_SURFACE_CREATE = SERVER[(ChannelType.DISPLAY, MsgDisplay.SURFACE_CREATE)]
MSGC_ACK_SYNC = CLIENT[(None, MsgcCommon.ACK_SYNC)]
MSGC_ACK = CLIENT[(None, MsgcCommon.ACK)]
MSGC_PONG = CLIENT[(None, MsgcCommon.PONG)]
MSGC_ATTACH = CLIENT[(ChannelType.MAIN, MsgcMain.ATTACH_CHANNELS)]
MSGC_DISPLAY_INIT = CLIENT[(ChannelType.DISPLAY, MsgcDisplay.INIT)]
# No pixmap cache: these clients decode every image (a cache would send repeats as FROM_CACHE).
DISPLAY_INIT = {"pixmap_cache_id": 1, "pixmap_cache_size": 0, "glz_dictionary_id": 0, "glz_dictionary_window_size": 0}

# mode -> (the client advertises LZ4, --image-compression, the image type its DRAW_COPYs must carry)
MODES: dict[str, tuple[bool, str, ImageType]] = {
    # (auto would give photo-like pictures QUIC, which these clients do not decode)
    "raw": (False, "off", ImageType.BITMAP),
    "lz4": (True, "lz4", ImageType.LZ4),
    "off": (True, "off", ImageType.BITMAP),
}
INLINE: list[str] = []  # --inline CODEC=PIXELS, passed to every server child
SERVER_ROOT = [ROOT]  # --server-root: the checkout the server children run (an older commit, for before/after)
CODEC_OF = {ImageType.BITMAP: "bitmap", ImageType.LZ4: "lz4"}


# --- decoding what the server sends (our own reader, not the server's code) ---------------
def decode_image(image: dict[str, Any]) -> np.ndarray:
    """A DRAW_COPY's source image as (height, width, 4) pixels: raw bitmap or LZ4."""
    w, h = image["width"], image["height"]
    data = image["data"]
    if image["type"] == ImageType.BITMAP:
        if image["format"] != BitmapFormat.BIT32 or image["x"] != w or image["y"] != h or image["stride"] < 4 * w:
            raise ValueError(f"unexpected bitmap header {image['format']} {image['x']}x{image['y']} stride {image['stride']}")
        if len(data) != image["stride"] * h:
            raise ValueError(f"bitmap data {len(data)} bytes, expected {image['stride'] * h}")
        px = np.frombuffer(data, np.uint8).reshape(h, image["stride"])[:, : 4 * w].reshape(h, w, 4)
        return px if image["bitmap_flags"] & BitmapFlags.TOP_DOWN else px[::-1]
    if image["type"] == ImageType.LZ4:
        # spice-common canvas_get_lz4: u8 top_down, u8 format, then {u32 BE size, LZ4 block}...
        top_down, fmt = data[0], data[1]
        if fmt != BitmapFormat.BIT32:
            raise ValueError(f"LZ4 image format {fmt}")
        size, out, pos = w * h * 4, bytearray(), 2
        while pos < len(data):
            (n,) = struct.unpack_from(">I", data, pos)
            out += lz4.block.decompress(data[pos + 4 : pos + 4 + n], uncompressed_size=size - len(out))
            pos += 4 + n
        if len(out) != size:
            raise ValueError(f"LZ4 image decoded to {len(out)} bytes, expected {size}")
        px = np.frombuffer(bytes(out), np.uint8).reshape(h, w, 4)
        return px if top_down else px[::-1]
    raise ValueError(f"image type {image['type']} not decoded here")


def colour_digest(fb: np.ndarray) -> str:
    return hashlib.sha256(fb[..., :3].tobytes()).hexdigest()  # as the child's `digest` (X byte ignored)


# --- a minimal protocol-level client ------------------------------------------------------
class Channel(asyncio.Protocol):
    """One channel connection: the link stage, then mini-header messages with acks and pongs."""

    def __init__(
        self, channel: ChannelType, connection_id: int, on_message: Callable[[int, bytes], None], channel_caps: tuple[int, ...] = ()
    ) -> None:
        loop = asyncio.get_running_loop()
        self.channel = channel
        self.connection_id = connection_id
        self.channel_caps = channel_caps
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
        transport.write(link_message(self.channel, self.connection_id, channel_caps=self.channel_caps))

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
    """One SPICE client: MAIN (session, pings) and DISPLAY (decodes every DRAW_COPY into `fb`)."""

    def __init__(self, lz4_cap: bool, expect: ImageType) -> None:
        loop = asyncio.get_running_loop()
        self.session: asyncio.Future[int] = loop.create_future()
        self.first_frame: asyncio.Future[None] = loop.create_future()
        self.caps = (DisplayCap.LZ4_COMPRESSION,) if lz4_cap else ()
        self.expect = expect
        self.draws = 0
        self.image_types: dict[str, int] = {}
        self.wrong_type = 0  # DRAW_COPYs whose image type is not the one the mode promises
        self.errors: list[str] = []  # images that did not decode
        self.fb: np.ndarray | None = None
        self.main: Channel | None = None
        self.display: Channel | None = None

    def on_main(self, msg_type: int, body: bytes) -> None:
        if msg_type == MsgMain.INIT and not self.session.done():
            self.session.set_result(struct.unpack_from("<I", body)[0])

    def on_display(self, msg_type: int, body: bytes) -> None:
        if msg_type == MsgDisplay.DRAW_COPY:
            self.draws += 1
            f = decode_body(MSG_DRAW_COPY, body)
            image = f["src_bitmap"]
            t = image["type"]
            name = CODEC_OF.get(t, str(t))
            self.image_types[name] = self.image_types.get(name, 0) + 1
            if t != self.expect:
                self.wrong_type += 1
            try:
                px = decode_image(image)
                box = f["box"]
                assert self.fb is not None, "DRAW_COPY before SURFACE_CREATE"
                self.fb[box["top"] : box["bottom"], box["left"] : box["right"]] = px
            except (ValueError, AssertionError, lz4.block.LZ4BlockError) as e:
                if len(self.errors) < 5:
                    self.errors.append(str(e))
        elif msg_type == MsgDisplay.COPY_BITS and self.fb is not None:  # a move of pixels the client holds
            f = decode_body(MSG_COPY_BITS, body)
            b, x, y = f["box"], f["src_pos"]["x"], f["src_pos"]["y"]
            h, w = b["bottom"] - b["top"], b["right"] - b["left"]
            self.fb[b["top"] : b["bottom"], b["left"] : b["right"]] = self.fb[y : y + h, x : x + w].copy()
        elif msg_type == MsgDisplay.DRAW_FILL:  # a drawable of one colour
            self.draws += 1
            f = decode_body(MSG_DRAW_FILL, body)
            box = f["box"]
            if self.fb is not None:
                self.fb[box["top"] : box["bottom"], box["left"] : box["right"]] = np.frombuffer(struct.pack("<I", f["color"]), np.uint8)
        elif msg_type == MsgDisplay.SURFACE_CREATE:
            f = decode_body(MSG_SURFACE_CREATE, body)
            self.fb = np.zeros((f["height"], f["width"], 4), np.uint8)
        elif msg_type == MsgDisplay.MARK and not self.first_frame.done():
            self.first_frame.set_result(None)  # the server sends MARK right after the full frame

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, self.main = await loop.create_connection(lambda: Channel(ChannelType.MAIN, 0, self.on_main), "127.0.0.1", port)
        await self.main.linked
        session_id = await self.session
        self.main.send(MSGC_ATTACH)
        _, self.display = await loop.create_connection(
            lambda: Channel(ChannelType.DISPLAY, session_id, self.on_display, self.caps), "127.0.0.1", port
        )
        await self.display.linked
        self.display.send(MSGC_DISPLAY_INIT, DISPLAY_INIT)

    def digest(self) -> str | None:
        return colour_digest(self.fb) if self.fb is not None else None

    def disconnected(self) -> bool:
        return any(ch is not None and ch.lost.done() and not ch.closing for ch in (self.main, self.display))

    def close(self) -> None:
        for ch in (self.display, self.main):
            if ch is not None:
                ch.close()


class StalledClient:
    """Links MAIN and DISPLAY with a small receive buffer, sends DISPLAY_INIT, never reads again."""

    RCVBUF = 4096

    def __init__(self, lz4_cap: bool) -> None:
        self.caps = (DisplayCap.LZ4_COMPRESSION,) if lz4_cap else ()
        self.socks: list[socket.socket] = []

    async def _link(self, port: int, channel: ChannelType, connection_id: int, caps: tuple[int, ...] = ()) -> tuple[socket.socket, bytes]:
        loop = asyncio.get_running_loop()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)  # before connect: the window is agreed then
        s.setblocking(False)
        self.socks.append(s)
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, link_message(channel, connection_id, channel_caps=caps))
        buf = bytearray()

        async def need(n: int) -> None:
            while len(buf) < n:
                chunk = await loop.sock_recv(s, 65536)
                if not chunk:
                    raise ConnectionError(f"stalled client: {channel.name} closed during the link")
                buf.extend(chunk)

        await need(LINK_HEADER.size)
        size = decode(LINK_HEADER, bytes(buf[: LINK_HEADER.size]))["size"]
        await need(LINK_HEADER.size + size)
        reply = decode(LINK_REPLY, bytes(buf[LINK_HEADER.size : LINK_HEADER.size + LINK_REPLY.size]))
        if reply["error"] != LinkError.OK:
            raise ConnectionError(f"stalled client: {channel.name} link refused: {LinkError(reply['error']).name}")
        del buf[: LINK_HEADER.size + size]
        await loop.sock_sendall(s, ticket_message(reply["pub_key"], b""))
        await need(4)
        if struct.unpack_from("<I", buf)[0] != LinkError.OK:
            raise ConnectionError(f"stalled client: {channel.name} ticket refused")
        del buf[:4]
        if channel == ChannelType.MAIN:
            await need(6)
            msg_type, body_size = struct.unpack_from("<HI", buf)
            await need(6 + body_size)
            if msg_type != MsgMain.INIT:
                raise ConnectionError(f"stalled client: first main message {msg_type}, not INIT")
        return s, bytes(buf)

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, rest = await self._link(port, ChannelType.MAIN, 0)
        session_id = struct.unpack_from("<I", rest, 6)[0]
        display, _ = await self._link(port, ChannelType.DISPLAY, session_id, self.caps)
        init = encode_body(MSGC_DISPLAY_INIT, DISPLAY_INIT)
        await loop.sock_sendall(display, HeaderWriter(mini=True).frame(MsgcDisplay.INIT, init))
        # ... and from here on nothing is read from either socket.

    def close(self) -> None:
        for s in self.socks:
            s.close()


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
    async def start(cls, port: int, fps: float | None, log_path: Path, options: list[str], source: str = "demo") -> ServerChild:
        root = SERVER_ROOT[0]
        env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        # Every benchmark client comes from 127.0.0.1: no per-address client limit.
        argv = ["--port", str(port), "--listen", "127.0.0.1", "--source", source, "--stats-interval", "0", "--admin-port", "0"]
        argv += ["--max-clients-per-address", "0", *options]
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(root / "benchmarks" / SERVER_SCRIPT.name),
                *(["--fps", str(fps)] if fps is not None else []),
                *[a for spec in INLINE for a in ("--inline", spec)],
                "--",
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=str(root),
                limit=16 << 20,  # a reply carries the stats of every client
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
        return [ln for ln in text.splitlines() if re.search(r"closing:|Traceback|Unhandled|Error|stalled|stopped reading", ln)]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.command("quit", timeout=10.0)
                await asyncio.wait_for(self.proc.wait(), 15.0)
            except (RuntimeError, TimeoutError, ConnectionError, BrokenPipeError):
                if self.proc.returncode is None:
                    self.proc.kill()  # only the child we started
                    await self.proc.wait()


# --- helpers for one measurement -------------------------------------------------------------
def parent_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def display_channels(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [ch for cl in stats["clients"] for ch in cl["channels"] if ch["channel"] == "display"]


def peak_mib(sample: dict[str, Any]) -> float:
    """The child's own peak RSS (VmHWM): its ru_maxrss starts at this process's RSS when it forked."""
    ru = sample["rusage"]
    return (ru.get("hwm_kib") or ru["maxrss_kib"]) / 1024.0


def encodes_delta(r0: dict[str, Any], r1: dict[str, Any]) -> dict[str, int]:
    return {c: r1["encodes"].get(c, 0) - r0["encodes"].get(c, 0) for c in sorted(set(r0["encodes"]) | set(r1["encodes"]))}


def frame_delta(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, float]:
    return b["frame_timer"]["count"] - a["frame_timer"]["count"], b["frame_timer"]["seconds"] - a["frame_timer"]["seconds"]


async def wait_quiet(clients: list[BenchClient], quiet: float = 0.6, timeout: float = 20.0) -> bool:
    """Until no client has received a DRAW_COPY for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = [c.draws for c in clients], time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = [c.draws for c in clients]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


async def settle(server: ServerChild, clients: list[BenchClient], timeout: float = 30.0) -> dict[str, Any]:
    """Wait until every client's framebuffer equals the server's surface (the source must be still):
    how many are exact at the end, and how long it took from the call."""
    t0 = time.monotonic()
    exact = 0
    while True:
        quiet = await wait_quiet(clients, quiet=0.5, timeout=max(1.0, timeout - (time.monotonic() - t0)))
        ref = await server.command("digest")
        exact = sum(c.digest() == ref["sha256"] for c in clients)
        if exact == len(clients) or time.monotonic() - t0 > timeout:
            return {"exact": exact, "quiet": quiet, "settle_s": time.monotonic() - t0}
        await asyncio.sleep(0.3)  # quiet but not exact: an update is still on its way (an encode in the pool)


async def verify(server: ServerChild, clients: list[BenchClient]) -> dict[str, Any]:
    """Pause the source, let the pipes drain, compare every client's framebuffer with the server's."""
    await server.command("pause")
    return await settle(server, clients)


# --- part 1: fan-out -------------------------------------------------------------------------
async def measure(n: int, mode: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    lz4_cap, compression, expect = MODES[mode]
    port = free_port()
    server = await ServerChild.start(
        port, args.fps, logdir / f"server-{mode}-n{n}.log", ["--max-fps", str(args.max_fps), "--image-compression", compression]
    )
    clients: list[BenchClient] = []
    try:
        t = time.monotonic()
        clients = [BenchClient(lz4_cap, expect) for _ in range(n)]
        await asyncio.wait_for(asyncio.gather(*(c.connect(port) for c in clients)), 120.0)
        await asyncio.wait_for(asyncio.gather(*(c.first_frame for c in clients)), 60.0)
        connect_s = time.monotonic() - t
        await asyncio.sleep(args.warmup)

        s0 = await server.command("sample")
        c0, p0, t0 = [c.draws for c in clients], parent_cpu(), time.monotonic()
        b0 = sum(c.display.bytes for c in clients if c.display)
        await asyncio.sleep(args.seconds)
        s1 = await server.command("sample")
        c1, p1, t1 = [c.draws for c in clients], parent_cpu(), time.monotonic()
        b1 = sum(c.display.bytes for c in clients if c.display)

        profile = None
        if n in args.profile:
            await server.command("profile_start")
            await asyncio.sleep(args.seconds)
            profile = await server.command(f"profile_stop {args.profile_top}")
        disconnected = sum(c.disconnected() for c in clients)
        check = await verify(server, clients)
        s2 = await server.command("sample")
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)
        await server.stop()

    elapsed = t1 - t0
    server_elapsed = s1["wall"] - s0["wall"]
    cpu = s1["rusage"]["cpu"] - s0["rusage"]["cpu"]
    reactor_cpu = s1["reactor_cpu"] - s0["reactor_cpu"]
    per_client = [b - a for a, b in zip(c0, c1, strict=True)]
    delivered = sum(per_client)
    r0, r1 = s0["stats"]["render"], s1["stats"]["render"]
    enc = encodes_delta(r0, r1)
    encodes = sum(enc.values())
    d0, d1 = display_channels(s0["stats"]), display_channels(s1["stats"])
    sends = r1["draws_sent"] - r0["draws_sent"]
    coalesced = sum(d["coalesced"] for d in d1) - sum(d["coalesced"] for d in d0)
    frames, frame_s = frame_delta(s0, s1)
    source_frames = (s1["source_frames"] or 0) - (s0["source_frames"] or 0)
    image_types: dict[str, int] = {}
    for c in clients:
        for k, v in c.image_types.items():
            image_types[k] = image_types.get(k, 0) + v
    return {
        "mode": mode,
        "clients": n,
        "seconds": elapsed,
        "server_cpu_s": cpu,
        "server_cpu_pct": 100.0 * cpu / server_elapsed,
        "reactor_cpu_pct": 100.0 * reactor_cpu / server_elapsed,
        "client_cpu_pct": 100.0 * (p1 - p0) / elapsed,
        "delivered": delivered,
        "cpu_per_update_us": 1e6 * cpu / delivered if delivered else float("nan"),
        "bytes_per_update": (b1 - b0) / delivered if delivered else float("nan"),
        "reactor_cpu_per_update_us": 1e6 * reactor_cpu / delivered if delivered else float("nan"),
        "updates_per_s_client": delivered / n / elapsed,
        "updates_per_s_client_min": min(per_client) / elapsed,
        "updates_per_s_total": delivered / elapsed,
        "source_fps": source_frames / server_elapsed,
        "frames": frames,
        "frame_ms": 1e3 * frame_s / frames if frames else float("nan"),
        "frame_max_ms": 1e3 * s1["frame_timer"]["max"],
        "drawables": r1["drawables"] - r0["drawables"],
        "snapshots": r1["snapshots"] - r0["snapshots"],
        "encodes_by_codec": enc,
        "encodes": encodes,
        "encodes_threaded": r1["encodes_threaded"] - r0["encodes_threaded"],
        "sends": sends,
        "sends_per_encode": sends / encodes if encodes else float("nan"),
        "coalesced": coalesced,
        "pipe_peak_items": max((d["pipe_peak_items"] for d in d1), default=0),
        "channel_codecs": sorted({d.get("codec") or "-" for d in d1}),
        "image_types": image_types,
        "wrong_type": sum(c.wrong_type for c in clients),
        "decode_errors": [e for c in clients for e in c.errors][:5],
        "exact": check["exact"],
        "quiet": check["quiet"],
        "settle_s": check["settle_s"],
        "peak_rss_mib": peak_mib(s2),
        "idle_rss_mib": peak_mib(server.ready),
        "rss_end_mib": (s1["rusage"]["rss_kib"] or 0) / 1024.0,
        "connect_s": connect_s,
        "join_snapshots": r0["snapshots"],  # full-surface drawables made while the N clients joined
        "server_clients_end": len(s1["stats"]["clients"]),
        "stalled_disconnects": s1["stats"]["stalled_disconnects"],
        "client_disconnects": disconnected,
        "server_log_problems": server.log_problems(),
        "profile": profile,
    }


# --- part 2: stalled clients -----------------------------------------------------------------
async def measure_stalled(stalled: int, mode: str, args: argparse.Namespace, logdir: Path, profile: bool = False) -> dict[str, Any]:
    lz4_cap, compression, expect = MODES[mode]
    port = free_port()
    server = await ServerChild.start(
        port,
        args.fps,
        logdir / f"server-stalled{stalled}-{mode}-{time.monotonic_ns()}.log",
        ["--max-fps", str(args.max_fps), "--image-compression", compression, "--stall-timeout", "3600", "--ping-timeout", "0"],
    )
    reader = BenchClient(lz4_cap, expect)
    stuck = [StalledClient(lz4_cap) for _ in range(stalled)]
    try:
        await asyncio.wait_for(reader.connect(port), 60.0)
        await asyncio.wait_for(reader.first_frame, 60.0)
        for s in stuck:
            await asyncio.wait_for(s.connect(port), 60.0)
        # every display channel exists and has had its first messages written
        deadline = time.monotonic() + 30
        while True:
            chans = display_channels((await server.command("sample"))["stats"])
            if len(chans) == 1 + stalled and all(ch["messages_sent"] > 0 for ch in chans):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"stalled clients did not start streaming: {chans}")
            await asyncio.sleep(0.1)
        await server.command("pause")  # the demo's ball stops: only the squares change the surface
        await wait_quiet([reader], quiet=0.3)
        s0 = await server.command("sample")
        draws0 = reader.draws
        run = await server.command(f"small_updates {args.updates} {args.per_turn} 4", timeout=1200.0)
        check = await settle(server, [reader])
        s1 = await server.command("sample")
        reader_disconnected = reader.disconnected()
        prof = None
        if profile:  # a second run under cProfile; only its profile is kept
            await server.command("profile_start")
            await server.command(f"small_updates {args.updates} {args.per_turn} 4", timeout=1200.0)
            prof = await server.command(f"profile_stop {args.profile_top}")
            prof["exact"] = (await settle(server, [reader]))["exact"] == 1
    finally:
        reader.close()
        for s in stuck:
            s.close()
        await asyncio.sleep(0.2)
        await server.stop()

    a, b = run["before"], run["after"]
    frames, frame_s = frame_delta(a, b)
    chans = display_channels(s1["stats"])
    reader_ch, stuck_ch = chans[0], chans[1:]  # clients are listed by seniority: the reader first
    chans0 = display_channels(s0["stats"])
    d0, stuck0 = chans0[0], chans0[1:]
    wall = b["wall"] - a["wall"]
    return {
        "mode": mode,
        "stalled": stalled,
        "updates": run["updates"],
        "turns": run["turns"],
        "wall_s": wall,
        "server_cpu_s": b["rusage"]["cpu"] - a["rusage"]["cpu"],
        "reactor_cpu_s": b["reactor_cpu"] - a["reactor_cpu"],
        "step_s": run["step_seconds"],
        "frames": frames,
        "frame_s": frame_s,
        "frame_us": 1e6 * frame_s / frames if frames else float("nan"),
        "frame_max_ms": 1e3 * b["frame_timer"]["max"],
        "updates_per_s": run["updates"] / wall if wall else float("nan"),
        "encodes_by_codec": encodes_delta(s0["stats"]["render"], run["stats"]["render"]),
        "encodes_threaded": run["stats"]["render"]["encodes_threaded"] - s0["stats"]["render"]["encodes_threaded"],
        "snapshots": run["stats"]["render"]["snapshots"] - s0["stats"]["render"]["snapshots"],
        "peak_pool_backlog": run.get("peak_pool_backlog", -1),
        "reader_draws": reader.draws - draws0,
        "reader_coalesced": reader_ch["coalesced"] - d0["coalesced"],
        "reader_collapses": reader_ch["collapses"] - d0["collapses"],
        "reader_max_items": reader_ch["pipe_max_items"],
        "reader_exact": check["exact"] == 1,
        "reader_settle_s": check["settle_s"],
        "reader_disconnected": reader_disconnected,
        "stalled_peak_items": max((c["pipe_peak_items"] for c in stuck_ch), default=0),
        "stalled_peak_bytes": max((c["pipe_peak_bytes"] for c in stuck_ch), default=0),
        "stalled_max_items": max((c["pipe_max_items"] for c in stuck_ch), default=0),
        "stalled_max_bytes": max((c["pipe_max_bytes"] for c in stuck_ch), default=0),
        "stalled_items_end": max((c["pipe_items"] for c in stuck_ch), default=0),
        "stalled_coalesced": sum(c["coalesced"] for c in stuck_ch) - sum(c["coalesced"] for c in stuck0),
        "stalled_collapses": sum(c["collapses"] for c in stuck_ch) - sum(c["collapses"] for c in stuck0),
        "stalled_paused": sum(bool(c["paused"]) for c in stuck_ch),
        "clients_end": len(s1["stats"]["clients"]),
        "stalled_disconnects": s1["stats"]["stalled_disconnects"],
        "peak_rss_mib": peak_mib(s1),
        "rss_end_mib": (s1["rusage"]["rss_kib"] or 0) / 1024.0,
        "server_log_problems": server.log_problems(),
        "profile": prof,
    }


# --- part 3: a real X display at 1920x1080 ------------------------------------------------------
X11_GLZ_WINDOW = 4 * 1024 * 1024  # pixels: what spice-gtk's default glz-window-size comes to
DRAG_W, DRAG_H = 640, 480
# codec -> (--image-compression, the GLZ window the clients announce)
X11_CODECS: dict[str, tuple[str, int]] = {"lz4": ("lz4", 0), "glz": ("auto_glz", X11_GLZ_WINDOW)}


def x11_workload(x: Any, name: str, size: tuple[int, int]) -> Any:
    """`drag`: a 640x480 window (xlogo) dragged over a text-covered desktop at 30 moves/s;
    `repaint`: the whole screen repainted 30 times a second (benchmarks/x11.py's)."""
    import x11

    if name == "repaint":
        return x11.Workload(x, "repaint", size)
    return x11.Workload(x, "drag", size, window=(DRAG_W, DRAG_H), text_lines=3000)


class X11Client(BenchClient):
    """A light client of a real display: links MAIN and DISPLAY (plain or TLS), ACKs and
    answers pings, counts draw messages and bytes; decodes nothing (its CPU is the
    benchmark process's, which shares the machine with the server)."""

    def __init__(self, glz_window: int, tls: Any) -> None:
        super().__init__(True, ImageType.LZ4)
        self.glz_window = glz_window
        self.tls = tls  # an ssl.SSLContext, or None

    def on_display(self, msg_type: int, body: bytes) -> None:
        if (msg_type >= 302 or msg_type == MsgDisplay.COPY_BITS) and msg_type not in (
            MsgDisplay.SURFACE_CREATE,
            MsgDisplay.SURFACE_DESTROY,
        ):
            self.draws += 1
        elif msg_type == MsgDisplay.MARK and not self.first_frame.done():
            self.first_frame.set_result(None)

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        extra = {"ssl": self.tls, "server_hostname": "localhost"} if self.tls is not None else {}
        _, self.main = await loop.create_connection(lambda: Channel(ChannelType.MAIN, 0, self.on_main), "127.0.0.1", port, **extra)
        await self.main.linked
        session_id = await self.session
        self.main.send(MSGC_ATTACH)
        _, self.display = await loop.create_connection(
            lambda: Channel(ChannelType.DISPLAY, session_id, self.on_display, self.caps), "127.0.0.1", port, **extra
        )
        await self.display.linked
        init = dict(DISPLAY_INIT, pixmap_cache_size=20 << 20, glz_dictionary_id=1 if self.glz_window else 0)
        init["glz_dictionary_window_size"] = self.glz_window  # as spice-gtk: a cache, and a GLZ window where GLZ is wanted
        self.display.send(MSGC_DISPLAY_INIT, init)

    @property
    def bytes(self) -> int:
        return self.display.bytes if self.display is not None else 0


async def measure_x11(
    x: Any, certs: dict[str, Path], workload: str, n: int, tls: bool, codec: str, args: argparse.Namespace, logdir: Path
) -> dict[str, Any]:
    import ssl

    compression, glz_window = X11_CODECS[codec]
    port, tls_port = free_port(), free_port()
    size = x.size()
    wl = x11_workload(x, workload, size)
    wl.start()
    opts = ["--max-fps", str(args.x11_max_fps), "--image-compression", compression, "--disable-ticketing", "--ping-interval", "600"]
    # 64 clients from one address: no per-address connection or link-rate limit here
    opts += ["--max-clients", str(max(n, 64)), "--max-connections-per-address", "0", "--link-rate", "0"]
    opts += ["--tls-port", str(tls_port), "--cert", str(certs["cert"]), "--key", str(certs["key"])]
    server = await ServerChild.start(
        port, None, logdir / f"server-x11-{workload}-{codec}-{'tls' if tls else 'tcp'}-n{n}.log", opts, source=f"x11:{x.display}"
    )
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    clients = [X11Client(glz_window, ctx) for _ in range(n)]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connect(tls_port if tls else port) for c in clients)), 180.0)
        await asyncio.wait_for(asyncio.gather(*(c.first_frame for c in clients)), 120.0)
        await asyncio.sleep(args.warmup)
        s0 = await server.command("sample")
        c0, p0, t0 = [(c.draws, c.bytes) for c in clients], parent_cpu(), time.monotonic()
        await asyncio.sleep(args.x11_seconds)
        s1 = await server.command("sample")
        c1, p1, t1 = [(c.draws, c.bytes) for c in clients], parent_cpu(), time.monotonic()
        profile = None
        if n in args.profile and workload in args.x11_profile:
            await server.command("profile_start")
            await asyncio.sleep(args.x11_seconds)
            profile = await server.command(f"profile_stop {args.profile_top}")
        disconnected = sum(c.disconnected() for c in clients)
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)
        await server.stop()
        wl.stop()
    secs = s1["wall"] - s0["wall"]
    frames, frame_s = frame_delta(s0, s1)
    r0, r1 = s0["stats"]["render"], s1["stats"]["render"]
    produced = (r1["drawables"] - r0["drawables"]) + (r1["snapshots"] - r0["snapshots"]) + (r1["copies"] - r0["copies"])
    draws = [b[0] - a[0] for a, b in zip(c0, c1, strict=True)]
    nbytes = [b[1] - a[1] for a, b in zip(c0, c1, strict=True)]
    reactor = s1["reactor_cpu"] - s0["reactor_cpu"]
    return {
        "workload": workload,
        "codec": codec,
        "transport": "tls" if tls else "tcp",
        "clients": n,
        "seconds": secs,
        "server_cpu_pct": 100.0 * (s1["rusage"]["cpu"] - s0["rusage"]["cpu"]) / secs,
        "reactor_cpu_pct": 100.0 * reactor / secs,
        "client_cpu_pct": 100.0 * (p1 - p0) / (t1 - t0),
        "frames": frames,
        "fps": frames / secs,
        "frame_ms": 1e3 * frame_s / frames if frames else float("nan"),
        "reactor_ms_per_frame": 1e3 * reactor / frames if frames else float("nan"),
        "frame_max_ms": 1e3 * s1["frame_timer"]["max"],
        "produced": produced,
        "draws_per_s_client": sum(draws) / n / secs,
        "draws_per_s_min": min(draws) / secs,
        "delivered_min": min(draws) / produced if produced else float("nan"),
        "kib_per_s_client": sum(nbytes) / n / secs / 1024.0,
        "encodes": sum(encodes_delta(r0, r1).values()),
        "disconnects": disconnected,
        "stalled_disconnects": s1["stats"]["stalled_disconnects"],
        "server_log_problems": server.log_problems(),
        "profile": profile,
    }


async def run_x11(args: argparse.Namespace, tmp: Path, loads: list[str]) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.certs import make_ca_and_server
    from support.xvfb import Xvfb

    certs = make_ca_and_server(tmp)
    rows = []
    x = Xvfb(tmp, size=args.x11_size, max_size=args.x11_size)
    try:
        for workload in args.x11_workloads:
            for codec in args.x11_codecs:
                for tls in args.x11_transports:
                    for n in args.x11_counts:
                        loads.append(load_average().split()[0])
                        t = time.monotonic()
                        r = await measure_x11(x, certs, workload, n, tls == "tls", codec, args, tmp)
                        rows.append(r)
                        print(
                            f"x11 {workload:7s} {codec:4s} {tls:3s} N={n:<3d} srv {r['server_cpu_pct']:5.1f}% reactor {r['reactor_cpu_pct']:5.1f}% "
                            f"fps {r['fps']:4.1f} frame {r['frame_ms']:6.2f} ms reactor/frame {r['reactor_ms_per_frame']:6.2f} ms "
                            f"draws/s/client {r['draws_per_s_client']:6.1f} (min {r['draws_per_s_min']:6.1f}, {r['delivered_min']:.2f} of produced) "
                            f"KiB/s/client {r['kib_per_s_client']:7.0f} client CPU {r['client_cpu_pct']:.0f}% disc {r['disconnects']} "
                            f"(run {time.monotonic() - t:.0f} s)"
                            + (f" log: {r['server_log_problems'][:2]}" if r["server_log_problems"] else ""),
                            flush=True,
                        )
    finally:
        x.stop()
    return rows


def x11_by(rows: list[dict[str, Any]], workload: str, codec: str, transport: str, n: int) -> dict[str, Any] | None:
    return next((r for r in rows if (r["workload"], r["codec"], r["transport"], r["clients"]) == (workload, codec, transport, n)), None)


def x11_ratio_rows(rows: list[dict[str, Any]], demo: list[dict[str, Any]]) -> list[list[str]]:
    """The goals of issue 18 as ratios within this run, one line per (workload, codec, transport)."""
    out = []
    for m in sorted({r["mode"] for r in demo}):
        one, sixteen = by(demo, m, 1), by(demo, m, 16)
        if one and sixteen:
            out.append(
                [
                    f"demo, {m}, tcp",
                    f"{sixteen['server_cpu_pct'] / one['server_cpu_pct']:.2f}",
                    f"{sixteen['frame_ms'] / one['frame_ms']:.2f}",
                    "-",
                    "-",
                ]
            )
    keys = sorted({(r["workload"], r["codec"], r["transport"]) for r in rows})
    for w, c, t in keys:
        one, sixteen, sixty4 = (x11_by(rows, w, c, t, n) for n in (1, 16, 64))
        if one is None:
            continue
        cpu = f"{sixteen['server_cpu_pct'] / one['server_cpu_pct']:.2f}" if sixteen else "-"
        frame = f"{sixteen['frame_ms'] / one['frame_ms']:.2f}" if sixteen else "-"
        reactor = f"{sixteen['reactor_ms_per_frame'] / one['reactor_ms_per_frame']:.2f}" if sixteen else "-"
        keep = f"{sixty4['draws_per_s_min'] / one['draws_per_s_client']:.2f}" if sixty4 and one["draws_per_s_client"] else "-"
        out.append([f"{w}, {c}, {t}", cpu, frame, reactor, keep])
    return out


def x11_tls_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """What a TLS client costs against a plain one: extra server CPU per client, same run."""
    out = []
    for w, c in sorted({(r["workload"], r["codec"]) for r in rows}):
        for n in sorted({r["clients"] for r in rows}):
            a, b = x11_by(rows, w, c, "tcp", n), x11_by(rows, w, c, "tls", n)
            if a and b:
                mib = b["kib_per_s_client"] * n / 1024.0
                extra = (b["server_cpu_pct"] - a["server_cpu_pct"]) / n
                per_mib = 10.0 * (b["server_cpu_pct"] - a["server_cpu_pct"]) / mib if mib else float("nan")
                out.append([w, c, str(n), f"{a['server_cpu_pct']:.1f}", f"{b['server_cpu_pct']:.1f}", f"{extra:.2f}", f"{per_mib:.1f}"])
    return out


X11_HEADER = [
    "workload",
    "codec",
    "transport",
    "clients",
    "server CPU %",
    "reactor CPU %",
    "frames/s",
    "ms in the frame",
    "reactor ms per frame (all)",
    "slowest frame ms",
    "draws/s per client",
    "slowest client draws/s",
    "slowest client / produced",
    "KiB/s per client",
    "client process CPU %",
]


def x11_table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["workload"],
            r["codec"],
            r["transport"],
            str(r["clients"]),
            f"{r['server_cpu_pct']:.1f}",
            f"{r['reactor_cpu_pct']:.1f}",
            f"{r['fps']:.1f}",
            f"{r['frame_ms']:.2f}",
            f"{r['reactor_ms_per_frame']:.2f}",
            f"{r['frame_max_ms']:.1f}",
            f"{r['draws_per_s_client']:.1f}",
            f"{r['draws_per_s_min']:.1f}",
            f"{r['delivered_min']:.2f}",
            f"{r['kib_per_s_client']:.0f}",
            f"{r['client_cpu_pct']:.0f}",
        ]
        for r in rows
    ]


X11_RATIO_HEADER = [
    "run",
    "server CPU, 16 clients / 1",
    "ms in the frame, 16 / 1",
    "reactor ms per frame (all), 16 / 1",
    "slowest of 64 clients' draws/s / one client's",
]
X11_TLS_HEADER = [
    "workload",
    "codec",
    "clients",
    "server CPU % plain",
    "server CPU % TLS",
    "TLS extra CPU % per client",
    "TLS extra CPU % per MiB/s sent",
]


def profiled(out: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(what, profile) of every profiled row of a run: the demo's and the X11 part's."""
    found = [(f"demo {r['mode']}, {r['clients']} clients", r["profile"]) for r in out.get("fanout", []) if r.get("profile")]
    found += [
        (f"{r['workload']} {r['codec']} {r['transport']}, {r['clients']} clients", r["profile"])
        for r in out.get("x11", [])
        if r.get("profile")
    ]
    return found


def profile_lines(out: dict[str, Any], before: dict[str, Any] | None, args: argparse.Namespace) -> list[str]:
    """The top of each cProfile (the reactor thread, by own time), before and after."""
    runs = ([("before", before)] if before is not None else []) + [("after", out)]
    lines = []
    for when, run in runs:
        for what, prof in profiled(run):
            if not lines:
                lines += [
                    "### Where the reactor's time goes (cProfile, top entries by own time)",
                    "",
                    f"cProfile of the server's reactor thread for a further {args.seconds:g} s (demo) or "
                    f"{args.x11_seconds:g} s (X11) window after the measured one (`--profile N`); "
                    "profiling slows Python code several times, so compare the shares, not the seconds. The reactor's "
                    "idle wait (`epoll.poll`) is left out.",
                    "",
                ]
            idle = sum(f["tottime"] for f in prof["top"] if "'poll' of 'select.epoll'" in f["function"])
            busy = prof["total"] - idle
            top = [f for f in prof["top"] if "'poll' of 'select.epoll'" not in f["function"]][:10]
            rows = [[f"{f['tottime']:.3f}", f"{100 * f['tottime'] / busy:.0f}%", str(f["ncalls"]), f"`{f['function']}`"] for f in top]
            lines += [
                f"{when}, {what} ({prof['total']:.2f} s profiled, {busy:.2f} s of it not waiting in epoll):",
                "",
                md_table(["own s", "share of the busy time", "calls", "function"], rows),
                "",
            ]
    return lines


def x11_section(out: dict[str, Any], before: dict[str, Any] | None, args: argparse.Namespace, loads: list[str]) -> str:
    rows, demo = out["x11"], out["fanout"]
    w, h = args.x11_size
    lines = [
        f"<!-- {X11}:begin -->",
        "## Fan-out on a real display (1920x1080)",
        "",
        f"An Xvfb of {w}x{h} served by `twistd spice --source x11:` (benchmarks/_server.py in a child process, "
        f"`--max-fps {args.x11_max_fps:g}`) to N light clients in the benchmark process (main + display channel, ACKs, "
        "pongs; they count draw messages and bytes and decode nothing), over plain TCP or TLS (the TLS port, "
        "TLS 1.3), with LZ4 (`--image-compression lz4`) or GLZ (`auto_glz`, the clients announce a GLZ window of 4 Mi "
        f"pixels, as spice-gtk does). Workloads: **drag**, a {DRAG_W}x{DRAG_H} window (xlogo) dragged over a "
        "text-covered desktop at 30 moves/s (COPY_BITS for the moved window plus the exposed areas), and **repaint**, "
        f"the whole screen repainted 30 times a second with two desktop-like pictures in turn. {args.x11_seconds:g} s "
        "windows after the first full frame and a warm-up; each row is a fresh server. Columns: server CPU (all "
        "threads: capture, codec pool, reactor), the reactor thread's own CPU, frames/s the server made, ms in the "
        "frame (`RenderService._frame`: paint hooks, damage to drawables, encodes submitted and the pushes into every "
        "pipe; before this change it also held every client's marshal and write), reactor ms per frame (all the "
        "reactor thread's CPU divided by frames, so the send turns are in it), draws/s per client (DRAW_COPY, "
        "DRAW_FILL and COPY_BITS received) and the slowest client's, and bytes per client.",
        "",
        *run_header(loads),
        "- Reproduce: `.venv/bin/python benchmarks/fanout.py --parts fanout,x11 --modes lz4 --counts 1,16` "
        "(`--x11-counts`, `--x11-workloads`, `--x11-codecs`, `--x11-transports`, `--x11-seconds`, `--profile 16`; "
        "`--server-root DIR --json before.json` runs an older checkout's server, `--before before.json` puts it here).",
        "",
        "The clients share the 2 cores with the server: at 64 clients their process takes a core of its own, so the "
        "64-client rows measure the machine as much as the server. Read the ratios within one run.",
        "",
        "### Goals (issue 18), as ratios within one run",
        "",
        "Goals: server CPU 16 / 1 <= 1.5 on the demo and the drag; reactor ms per frame 16 / 1 <= 1.5; "
        "the slowest of 64 clients keeps >= 0.9 of one client's draws.",
        "",
    ]
    if before is not None:
        lines += [
            "Before (the code of this section's 'before' run):",
            "",
            md_table(X11_RATIO_HEADER, x11_ratio_rows(before["x11"], before["fanout"])),
            "",
            "After:",
            "",
        ]
    lines += [md_table(X11_RATIO_HEADER, x11_ratio_rows(rows, demo)), ""]
    lines += [
        "### What a TLS client costs",
        "",
        "Twisted's TLS transport joins each write and encrypts it per connection (16 KiB records), so every TLS client "
        "costs its own AES pass over everything it is sent, where a plain client costs a copy into the kernel. Same "
        "run, same workload, TLS rows against plain rows:",
        "",
        md_table(X11_TLS_HEADER, x11_tls_rows(rows)),
        "",
        "### Measured",
        "",
        md_table(X11_HEADER, x11_table_rows(rows)),
        "",
    ]
    if before is not None:
        lines += ["Before:", "", md_table(X11_HEADER, x11_table_rows(before["x11"])), ""]
    lines += profile_lines(out, before, args)
    odd = [
        f"{r['workload']} {r['codec']} {r['transport']} N={r['clients']}: {r['disconnects']} disconnected" for r in rows if r["disconnects"]
    ]
    if odd:
        lines += ["Irregularities: " + "; ".join(odd), ""]
    lines.append(f"<!-- {X11}:end -->")
    return "\n".join(lines)


# --- output ---------------------------------------------------------------------------------
COLUMNS = [
    ("mode", "mode", "{}"),
    ("clients", "N", "{:d}"),
    ("server_cpu_pct", "srv CPU %", "{:.0f}"),
    ("reactor_cpu_pct", "reactor %", "{:.0f}"),
    ("cpu_per_update_us", "us CPU/upd", "{:.0f}"),
    ("frame_ms", "ms/frame", "{:.3f}"),
    ("updates_per_s_client", "upd/s/client", "{:.1f}"),
    ("updates_per_s_client_min", "min client", "{:.1f}"),
    ("frames", "frames", "{:d}"),
    ("encodes", "encodes", "{:d}"),
    ("encodes_threaded", "threaded", "{:d}"),
    ("sends", "sends", "{:d}"),
    ("sends_per_encode", "sends/enc", "{:.2f}"),
    ("coalesced", "coalesced", "{:d}"),
    ("exact", "exact", "{:d}"),
    ("wrong_type", "wrong type", "{:d}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("client_cpu_pct", "client CPU %", "{:.0f}"),
]

STALLED_COLUMNS = [
    ("mode", "mode", "{}"),
    ("stalled", "stalled", "{:d}"),
    ("updates", "updates", "{:d}"),
    ("wall_s", "wall s", "{:.2f}"),
    ("server_cpu_s", "srv CPU s", "{:.2f}"),
    ("reactor_cpu_s", "reactor CPU s", "{:.2f}"),
    ("frame_us", "us/frame", "{:.0f}"),
    ("frame_max_ms", "max ms", "{:.1f}"),
    ("reader_draws", "reader draws", "{:d}"),
    ("stalled_peak_items", "stalled peak items", "{:d}"),
    ("stalled_peak_bytes", "stalled peak bytes", "{:d}"),
    ("stalled_coalesced", "stalled coalesced", "{:d}"),
    ("reader_exact", "reader exact", "{}"),
]


def print_table(results: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    cells = [[h for _, h, _ in columns]] + [[fmt.format(r[k]) for k, _, fmt in columns] for r in results]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def run_header(loads: list[str]) -> list[str]:
    now = datetime.datetime.now(datetime.UTC)
    return [
        f"- Date: {now:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()}; "
        f"shared: other processes (test suites) ran at the same time (load average {', '.join(loads)} at the starts of the runs)",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- Command: `{command_line()}`",
    ]


def fmt_enc(enc: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in enc.items() if v) or "0"


def by(results: list[dict[str, Any]], mode: str, n: int) -> dict[str, Any] | None:
    return next((r for r in results if r["mode"] == mode and r["clients"] == n), None)


# The raw figures of the archived section (2026-11-25, before pipeline v2), for the comparison bullet.
V1_CPU_PER_UPDATE_US = {1: 606, 2: 270, 4: 165, 8: 77, 16: 43, 32: 36}
V1_MACHINE = "2 CPUs, AMD EPYC, Linux 6.18.44-fc-v669"


def span(values: list[float]) -> str:
    lo, hi = f"{min(values):.0f}", f"{max(values):.0f}"
    return lo if lo == hi else f"{lo}-{hi}"


def fanout_findings(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Sentences on what the numbers show, derived from them (so they stay true on a re-run)."""
    out = []
    modes = [m for m in args.modes if any(r["mode"] == m for r in results)]
    counts = sorted({r["clients"] for r in results})
    lo_n, hi_n = counts[0], counts[-1]
    for m in modes:
        base, last = by(results, m, lo_n), by(results, m, hi_n)
        if base is None or last is None:
            continue
        spe = ", ".join(f"{r['sends_per_encode']:.1f}" for r in results if r["mode"] == m)
        codecs = sorted({k for r in results if r["mode"] == m for k, v in r["encodes_by_codec"].items() if v})
        out.append(
            f"**{m}: encode once.** Encodes per window stayed at {min(r['encodes'] for r in results if r['mode'] == m)}-"
            f"{max(r['encodes'] for r in results if r['mode'] == m)} (codec {', '.join(codecs) or '-'}) for every N while sends "
            f"grew with N: sends per encode {spe}. Server CPU per delivered update fell from "
            f"{base['cpu_per_update_us']:.0f} us at N={lo_n} to {last['cpu_per_update_us']:.0f} us at N={hi_n} "
            f"({last['cpu_per_update_us'] / base['cpu_per_update_us']:.2f}x)."
        )
    if "raw" in modes and "lz4" in modes:
        pairs = [(by(results, "raw", n), by(results, "lz4", n)) for n in counts]
        ratios = [
            f"{lz['cpu_per_update_us'] / raw['cpu_per_update_us']:.2f} at N={n}"
            for n, (raw, lz) in zip(counts, pairs, strict=True)
            if raw and lz
        ]
        fratios = [f"{lz['frame_ms'] / raw['frame_ms']:.2f}" for raw, lz in pairs if raw and lz]
        bratios = [f"{lz['bytes_per_update'] / raw['bytes_per_update']:.3f}" for raw, lz in pairs if raw and lz]
        out.append(
            f"**LZ4 against raw**, CPU per delivered update (lz4 / raw): {', '.join(ratios)}; reactor time per frame "
            f"(lz4 / raw): {', '.join(fratios)}; bytes a client received per update (lz4 / raw): "
            f"{', '.join(bratios)}. The ball's update (its old and new place, 55x53 pixels) is below the LZ4 inline "
            "threshold (64x64), so LZ4 compresses it on the reactor, once per frame whatever N is (a few microseconds); the "
            "clock (200x36, once a second) is above it and goes to the pool: the 'threaded' column. The raw bitmap costs "
            "nothing to make (the crop's bytes are sent as they are), so the two modes cost the server about the same CPU "
            "per update here, and LZ4 sends an order of magnitude fewer bytes: on loopback, bytes are cheap; on a real link "
            "they are the cost."
        )
    for m in modes:
        rows = [r for r in results if r["mode"] == m]
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            per_extra = (b["frame_ms"] - a["frame_ms"]) / max(1, b["clients"] - a["clients"])
            out.append(
                f"**{m}: reactor time per commit** was {a['frame_ms']:.3f} ms at N={a['clients']} and {b['frame_ms']:.3f} ms at "
                f"N={b['clients']}: about {1e3 * per_extra:.0f} us more per extra client (the enqueue into each pipe: since issue 18 "
                "the marshal and the write of each client run after the commit, in its send turn)."
            )
    raw_rows = {r["clients"]: r for r in results if r["mode"] == "raw"}
    common = [n for n in sorted(V1_CPU_PER_UPDATE_US) if n in raw_rows]
    if common:
        out.append(
            "**Against the figures before v2** (archived below; measured on another machine, "
            f"{V1_MACHINE}, so compare shapes, not digits): raw server CPU per delivered update, before -> now: "
            + ", ".join(f"N={n} {V1_CPU_PER_UPDATE_US[n]} -> {raw_rows[n]['cpu_per_update_us']:.0f} us" for n in common)
            + ". Both fall with N as the per-frame work is shared; sends per encode track N in both."
        )
    peaks = [r["peak_rss_mib"] for r in results]
    out.append(
        f"**Memory.** The server's own peak RSS (VmHWM) was {span(peaks)} MiB over all runs, at start "
        f"{span([r['idle_rss_mib'] for r in results])} MiB. (The figures before "
        "v2 used the child's `ru_maxrss`, which on Linux starts at the RSS of the process that forked it, the benchmark "
        "with its clients, so they overstate the server: a child of a 300 MiB parent reports 310 MiB `ru_maxrss` and "
        "9 MiB VmHWM.)"
    )
    bad = [r for r in results if r["exact"] != r["clients"] or r["wrong_type"] or r["decode_errors"]]
    if bad:
        out.append(
            "**Checks failed**: "
            + "; ".join(
                f"{r['mode']} N={r['clients']}: {r['exact']}/{r['clients']} exact, {r['wrong_type']} wrong image type, errors {r['decode_errors']}"
                for r in bad
            )
        )
    else:
        out.append(
            "**Checks.** Every client decoded every DRAW_COPY (raw clients got only BITMAP images, LZ4 clients only LZ4), and "
            "after the source was paused every client's framebuffer equalled the server's surface (colour bytes), at every N and mode."
        )
    behind = [r for r in results if r["updates_per_s_client_min"] < 0.9 * r["updates_per_s_client"] or r["source_fps"] < 0.9 * args.fps]
    if behind:
        out.append(
            "**Falling behind**: "
            + "; ".join(
                f"{r['mode']} N={r['clients']}: slowest client {r['updates_per_s_client_min']:.0f} updates/s of "
                f"{r['frames'] / r['seconds']:.0f} frames/s, coalesced {r['coalesced']}, client process {r['client_cpu_pct']:.0f}% CPU"
                for r in behind
            )
        )
    return out


def fanout_section(results: list[dict[str, Any]], args: argparse.Namespace, loads: list[str]) -> str:
    counts = sorted({r["clients"] for r in results})
    modes = [m for m in args.modes if any(r["mode"] == m for r in results)]
    rel_header = ["clients"]
    for m in modes:
        rel_header += [f"{m}: CPU per update vs N={counts[0]}", f"{m}: reactor time per frame vs N={counts[0]}"]
    if "raw" in modes and "lz4" in modes:
        rel_header += ["lz4 / raw: CPU per update", "lz4 / raw: reactor time per frame", "lz4 / raw: bytes per update"]
    rel_rows = []
    for n in counts:
        row = [str(n)]
        for m in modes:
            r, base = by(results, m, n), by(results, m, counts[0])
            row += (
                [f"{r['cpu_per_update_us'] / base['cpu_per_update_us']:.2f}", f"{r['frame_ms'] / base['frame_ms']:.2f}"]
                if r and base
                else ["-", "-"]
            )
        if "raw" in modes and "lz4" in modes:
            raw, lz = by(results, "raw", n), by(results, "lz4", n)
            row += (
                [
                    f"{lz['cpu_per_update_us'] / raw['cpu_per_update_us']:.2f}",
                    f"{lz['frame_ms'] / raw['frame_ms']:.2f}",
                    f"{lz['bytes_per_update'] / raw['bytes_per_update']:.2f}",
                ]
                if raw and lz
                else ["-", "-", "-"]
            )
        rel_rows.append(row)
    abs_rows = [
        [
            r["mode"],
            str(r["clients"]),
            f"{r['server_cpu_pct']:.1f}",
            f"{r['reactor_cpu_pct']:.1f}",
            f"{r['cpu_per_update_us']:.0f}",
            f"{r['frame_ms']:.3f}",
            f"{r['frame_max_ms']:.1f}",
            f"{r['updates_per_s_client']:.1f}",
            f"{r['updates_per_s_client_min']:.1f}",
            f"{r['frames']}",
            fmt_enc(r["encodes_by_codec"]),
            str(r["encodes_threaded"]),
            str(r["sends"]),
            f"{r['sends_per_encode']:.2f}",
            str(r["coalesced"]),
            f"{r['bytes_per_update']:.0f}",
            f"{r['exact']}/{r['clients']}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for r in results
    ]
    odd = [
        f"{r['mode']} N={r['clients']}: {r['client_disconnects']} client(s) disconnected, {r['stalled_disconnects']} stalled, "
        f"{r['server_clients_end']} clients left on the server."
        for r in results
        if r["client_disconnects"] or r["stalled_disconnects"] or r["server_clients_end"] != r["clients"]
    ]
    lines = [
        f"<!-- {FANOUT}:begin -->",
        "## Fan-out",
        "",
        "One changing display served to N clients at once, after the display pipeline v2 (issue 8: damage batched into "
        "frames, encodes in the producer on a codec pool, one payload per (drawable, codec), bounded pipes). The server "
        "runs alone in a child process built like `twistd spice --source demo` (benchmarks/_server.py), with the demo's "
        f"ball moving at {args.fps:g} fps and `--max-fps {args.max_fps:g}` (so that each source tick is one frame, as in "
        "the figures before v2; the default is 30). N protocol-level clients in the benchmark process link the main and "
        "display channels, send ACKs and PONGs, and decode every DRAW_COPY into their own framebuffer: **raw** clients do "
        "not advertise DISPLAY_CAP_LZ4_COMPRESSION and must get BITMAP images, **lz4** clients advertise it and must get "
        f"LZ4 images. After every client has its first full frame and {args.warmup:g} s of warm-up, a {args.seconds:g} s "
        "window is measured: the server process's CPU time (user + system, all threads), its reactor thread's own CPU "
        "time (`time.thread_time` read on the reactor), the reactor time spent in `RenderService._frame` per frame (timed "
        "inside the child: the commit, inline encodes and the push into every pipe; before issue 18 also the writes that followed at once), "
        "the updates the clients received, and the server's counters (`render.encodes` per codec, `encodes_threaded`, "
        "`render.draws_sent`, the display channels' `coalesced`). Then the source is paused and each client's framebuffer "
        "is compared with the server's surface. Each (mode, N) gets a fresh server.",
        "",
        *run_header(loads),
        "- Reproduce from a checkout (after `scripts/setup.sh`): `.venv/bin/python benchmarks/fanout.py` "
        "(`--parts fanout`, `--modes raw,lz4,off`, `--counts 1,4`, `--seconds 4`, `--no-write` to only print). "
        "The script imports the checkout's `spice_twisted`, not an installed copy.",
        "",
        "These are numbers from single short runs on a small machine that other work shared (the clients also share "
        "its 2 cores with the server): read the ratios measured in the same run, not the digits. Nothing here is "
        "asserted by the test suite.",
        "",
        "### Ratios",
        "",
        md_table(rel_header, rel_rows),
        "",
        *[f"- {s}" for s in fanout_findings(results, args)],
        "",
        "### Measured",
        "",
        md_table(
            [
                "mode",
                "clients",
                "server CPU %",
                "reactor thread CPU %",
                "µs server CPU per delivered update",
                "reactor ms per frame",
                "slowest frame ms",
                "updates/s per client",
                "slowest client updates/s",
                "frames",
                "encodes",
                "of them threaded",
                "sends",
                "sends / encode",
                "coalesced",
                "bytes per update",
                "exact",
                "peak RSS MiB",
            ],
            abs_rows,
        ),
        "",
        f"Frames, encodes, sends and coalesced are counts over the {args.seconds:g} s window; CPU % is of one core. "
        "Bytes per update: display-channel bytes a client received in the window per DRAW_COPY. "
        "The slowest frame is the maximum since the server started (it includes the joins' full-surface frame).",
    ]
    if odd:
        lines += ["", "Irregularities in this run: " + " ".join(odd)]
    lines.append(f"<!-- {FANOUT}:end -->")
    return "\n".join(lines)


def stalled_findings(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    out = []
    for m in args.stalled_modes:
        nones = [r for r in rows if r["mode"] == m and r["stalled"] == 0]
        somes = [r for r in rows if r["mode"] == m and r["stalled"] > 0]
        if not nones or not somes:
            continue
        med = statistics.median
        none = {k: med(r[k] for r in nones) for k in ("server_cpu_s", "frame_us", "wall_s", "frame_s")}
        some = dict(somes[0])
        some.update({k: med(r[k] for r in somes) for k in ("server_cpu_s", "frame_us", "wall_s", "frame_s")})
        for k in ("stalled_peak_items", "stalled_peak_bytes", "stalled_items_end"):
            some[k] = max(r[k] for r in somes)
        some["reader_exact"] = all(r["reader_exact"] for r in somes)
        some["profile"] = next((r["profile"] for r in somes if r.get("profile")), None)
        none["reader_exact"] = all(r["reader_exact"] for r in nones)
        pairs = [(a, b) for rep in sorted({r["rep"] for r in somes}) for a in nones for b in somes if a["rep"] == rep and b["rep"] == rep]
        frame_ratios = ", ".join(f"{b['frame_us'] / a['frame_us']:.2f}" for a, b in pairs)
        cpu_ratios = ", ".join(f"{b['server_cpu_s'] / a['server_cpu_s']:.2f}" for a, b in pairs)
        churn = m != "raw" and any(r["reader_collapses"] > 50 for r in nones)
        out.append(
            f"**{m}: cost of {some['stalled']} stalled clients** (medians of {len(somes)} runs each; the ratios of each pair "
            f"in brackets). Over {some['updates']} one-square frames, server CPU {some['server_cpu_s']:.2f} s against "
            f"{none['server_cpu_s']:.2f} s without them (**{some['server_cpu_s'] / none['server_cpu_s']:.2f}x**; {cpu_ratios}), "
            f"reactor time per frame {some['frame_us']:.0f} us against {none['frame_us']:.0f} us "
            f"(**{some['frame_us'] / none['frame_us']:.2f}x**; {frame_ratios}), wall time {some['wall_s'] / none['wall_s']:.2f}x: "
            f"the {some['stalled']} stalled pipes added {some['frame_s'] - none['frame_s']:.2f} s of reactor time over the "
            f"{some['updates']} frames, {1e6 * (some['frame_s'] - none['frame_s']) / some['updates'] / some['stalled']:.0f} us "
            "per stalled pipe per frame (before v2, issue 8 measured four paused clients costing 12.6 s of reactor time over "
            "8,000 commits). A stalled pipe costs one push per frame: below its bounds a covered-drawable check over a "
            "constant window (16 items), past them an add to its refresh region (coarsened past 256 rects); it never walks "
            "its backlog of items."
            + (
                " Here the reading client's own snapshot churn (below) dominates the frame time and varies from run to run, "
                "so these ratios say little about the stalled pipes: raw is the clean comparison."
                if churn
                else ""
            )
        )
        out.append(
            f"**{m}: bounded.** Each stalled pipe peaked at {some['stalled_peak_items']} items (bound {some['stalled_max_items']}) "
            f"and {some['stalled_peak_bytes']} bytes (bound {some['stalled_max_bytes']}); together they coalesced "
            f"{some['stalled_coalesced']} drawables in {some['stalled_collapses']} collapse(s), and held {some['stalled_items_end']} "
            f"item(s) at the end. {some['clients_end']} clients were still connected (stall timeout set to an hour for the run); "
            f"the reading client {'ended exact' if some['reader_exact'] else 'did NOT end exact'} "
            f"(without stalled clients: {'exact' if none['reader_exact'] else 'NOT exact'}), after {some['reader_draws']} "
            f"DRAW_COPYs (its own pipe coalesces too: {some['updates']} frames arrive {args.per_turn} per reactor turn, "
            "faster than its ACK window lets them out)."
        )
        prof = some.get("profile")
        if prof:
            top = prof["top"][:6]
            region = sum(r["tottime"] for r in prof["top"] if "region.py" in r["function"])
            out.append(
                f"**{m}: where the reactor's time goes with stalled clients** (cProfile of the reactor through a second run with "
                f"{some['stalled']} stalled, {prof['total']:.2f} s profiled; `--profile-stalled`): "
                + ", ".join(f"`{r['function']}` {r['tottime']:.2f} s ({r['ncalls']} calls)" for r in top)
                + f"; render/region.py among the top {len(prof['top'])}: {region:.2f} s. An absorbed push is a "
                "`RefreshItem.add`: `Region.add` of the 4x4 rect, then `len(region)` to compare with COARSEN_RECTS, and "
                "`Region.__len__` sums over every band, so each push walks the refresh region (up to 256 rects)."
            )
    raw = next((r for r in rows if r["mode"] == "raw" and r["stalled"] == 0), None)
    lz = next((r for r in rows if r["mode"] == "lz4" and r["stalled"] == 0), None)  # the first of each
    if raw and lz and lz["reader_collapses"] > 5 * max(1, raw["reader_collapses"]):
        out.append(
            f"**lz4 against raw, one reader and no stalled clients**: reactor time per frame {lz['frame_us']:.0f} us against "
            f"{raw['frame_us']:.0f} us ({lz['frame_us'] / raw['frame_us']:.1f}x). The reader's pipe collapsed "
            f"{lz['reader_collapses']} times and the server took {lz['snapshots']} snapshots ({lz['encodes_threaded']} encodes on "
            f"the pool) for {lz['reader_draws']} DRAW_COPYs delivered; raw: {raw['reader_collapses']} collapses, "
            f"{raw['snapshots']} snapshots, {raw['reader_draws']} DRAW_COPYs. When the pipe reaches its refresh, the refresh "
            "becomes a snapshot (a crop of its whole region, on the reactor) whose LZ4 encode is large enough to go to the "
            "pool; the pipe waits for it, the pushes past the item bound collapse the pipe again and drop that snapshot with its encode "
            "in flight, and the next refresh starts over. A raw snapshot is encoded inline and goes out at once. The "
            "dropped snapshots' encodes still run: the codec pool's queue held up to "
            f"{lz['peak_pool_backlog']} encodes (sampled at the end of each turn), each with its crop, and the server's "
            f"peak RSS was {lz['peak_rss_mib']:.0f} MiB against {raw['peak_rss_mib']:.0f} MiB raw (at the end "
            f"{lz['rss_end_mib']:.0f} MiB: transient). This needs more than {lz['reader_max_items']} frames within one "
            "encode's latency: the benchmark's flushed frames, not a source paced by --max-fps."
            + (
                f" While the pool is that busy, each 4x4 LZ4 encode on the reactor took {1e6 * c['tottime'] / c['ncalls']:.0f} us "
                f"({c['ncalls']} calls, cProfile of the second run with {c['stalled']} stalled) where it takes a few microseconds with an "
                "idle pool (Codec pool, below): `lz4.block.compress` releases the GIL even for 64 bytes, and a pool thread "
                "waiting to run its Python (building the payload, the callback) takes it and keeps it until it blocks."
                if (c := lz4_compress_row(rows))
                else ""
            )
        )
    return out


def lz4_compress_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """lz4.block.compress in the profile of an lz4 run, if one was profiled."""
    for r in rows:
        if r["mode"] == "lz4" and r.get("profile"):
            for f in r["profile"]["top"]:
                if "lz4.block" in f["function"] and "compress" in f["function"]:
                    return {**f, "stalled": r["stalled"]}
    return None


def stalled_section(rows: list[dict[str, Any]], args: argparse.Namespace, loads: list[str]) -> str:
    table = [
        [
            r["mode"],
            str(r.get("rep", 0) + 1),
            str(r["stalled"]),
            str(r["updates"]),
            f"{r['wall_s']:.2f}",
            f"{r['server_cpu_s']:.2f}",
            f"{r['reactor_cpu_s']:.2f}",
            f"{r['frame_us']:.0f}",
            f"{r['frame_max_ms']:.1f}",
            fmt_enc(r["encodes_by_codec"]),
            str(r["encodes_threaded"]),
            str(r["snapshots"]),
            str(r["peak_pool_backlog"]),
            str(r["reader_draws"]),
            str(r["reader_collapses"]),
            f"{r['stalled_peak_items']} / {r['stalled_max_items']}" if r["stalled"] else "-",
            f"{r['stalled_peak_bytes']} / {r['stalled_max_bytes']}" if r["stalled"] else "-",
            str(r["stalled_coalesced"]) if r["stalled"] else "-",
            f"{'yes' if r['reader_exact'] else 'NO'} ({r['reader_settle_s']:.1f} s)",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for r in rows
    ]
    lines = [
        f"<!-- {STALLED}:begin -->",
        "## Stalled clients",
        "",
        f"What clients that never read cost the producer. One reading client (as in the fan-out part) and either no or "
        f"{args.stalled} stalled clients, which link main and display with a {StalledClient.RCVBUF}-byte SO_RCVBUF, send "
        f"DISPLAY_INIT and then never read a byte. The server child (benchmarks/_server.py `small_updates`) pauses the "
        f"demo and draws {args.updates} squares of 4x4 pixels at pseudo-random places, each followed by "
        f"`render.damage(rect)` and `render.flush()`, so each is its own frame, {args.per_turn} per reactor turn "
        "(`callLater(0)` between turns, so the reactor reads ACKs and writes in between). Measured over the run: the "
        "server process's CPU (all threads), the reactor thread's CPU, and the reactor time in `RenderService._frame` "
        "per frame; then the stalled pipes' peaks against their bounds, and the reader's framebuffer against the "
        "server's surface. Each row is a fresh server; each pair is a run without and a run with stalled clients, one right "
        "after the other (the order alternates from pair to pair), and the ratios compare within pairs and between the "
        "medians.",
        "",
        *run_header(loads),
        f"- Reproduce: `.venv/bin/python benchmarks/fanout.py --parts stalled` (`--updates {args.updates}`, "
        f"`--stalled {args.stalled}`, `--stalled-modes raw,lz4`, `--stalled-repeat {args.stalled_repeat}`, `--profile-stalled`, `--no-write`).",
        "",
        md_table(
            [
                "mode",
                "pair",
                "stalled clients",
                "updates",
                "wall s",
                "server CPU s",
                "reactor CPU s",
                "reactor µs per frame",
                "slowest frame ms",
                "encodes",
                "of them threaded",
                "snapshots",
                "codec pool peak backlog",
                "reader DRAW_COPYs",
                "reader pipe collapses",
                "stalled pipe peak items / bound",
                "stalled pipe peak bytes / bound",
                "stalled coalesced (all)",
                "reader exact (s after the run)",
                "peak RSS MiB",
            ],
            table,
        ),
        "",
        *[f"- {s}" for s in stalled_findings(rows, args)],
    ]
    problems = [f"{r['mode']} stalled={r['stalled']}: {p}" for r in rows for p in r["server_log_problems"][:3]]
    if problems:
        lines += ["", "Server log lines worth a look: " + "; ".join(f"`{p}`" for p in problems)]
    lines.append(f"<!-- {STALLED}:end -->")
    return "\n".join(lines)


def write_section(name: str, section: str, keep: str | None = None) -> None:
    """Replace the `name` section of docs/performance.md (append it if missing). A `keep`
    block found inside the old section (an archived subsection) is carried into the new one."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = (
        DOC.read_text()
        if DOC.exists()
        else (
            "# Performance\n\n"
            "Measured numbers for spice-twisted, produced by the scripts in `benchmarks/`. Each section is\n"
            "generated by its script between `<!-- name:begin -->` and `<!-- name:end -->` comments, so a\n"
            "re-run replaces only its own section. They are single runs on one machine, not guarantees,\n"
            "and no test asserts them.\n"
        )
    )
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        old, tail = rest.split(end, 1)
        if keep is not None:
            kb, ke = f"<!-- {keep}:begin -->", f"<!-- {keep}:end -->"
            if kb in old and ke in old:
                block = kb + old.split(kb, 1)[1].split(ke, 1)[0] + ke
                section = section[: -len(end)].rstrip("\n") + "\n\n" + block + "\n" + end
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def print_profile(r: dict[str, Any]) -> None:
    prof = r["profile"]
    print(f"\ncProfile of the server's reactor thread, {r['mode']} N={r['clients']} ({prof['total']:.2f} s profiled, by own time):")
    for row in prof["top"]:
        print(f"  {row['tottime']:7.3f} s  {row['ncalls']:>8}  {row['function']}")


# --- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="fanout,stalled", help="what to run: fanout, stalled, x11, tlswrite (default: %(default)s)")
    p.add_argument("--modes", default="raw,lz4", help=f"fan-out image modes, of {', '.join(MODES)} (default: %(default)s)")
    p.add_argument("--counts", default="1,4,16,32", help="client counts to run (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="measurement window per count (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds after the first full frames (default: %(default)s)")
    p.add_argument("--fps", type=float, default=60.0, help="demo source frame rate (default: %(default)s)")
    p.add_argument("--max-fps", type=float, default=60.0, help="the server's --max-fps (default: %(default)s)")
    p.add_argument("--stalled", type=int, default=4, help="stalled clients in the stalled part (default: %(default)s)")
    p.add_argument("--stalled-modes", default="raw", help="image modes for the stalled part (default: %(default)s)")
    p.add_argument("--updates", type=int, default=20000, help="small updates in the stalled part (default: %(default)s)")
    p.add_argument("--stalled-repeat", type=int, default=3, help="pairs of stalled runs per mode (default: %(default)s)")
    p.add_argument("--per-turn", type=int, default=200, help="small updates per reactor turn (default: %(default)s)")
    p.add_argument(
        "--inline", action="append", default=[], metavar="CODEC=PIXELS", help="override codecs.INLINE_PIXELS in the server child"
    )
    p.add_argument("--no-write", action="store_true", help="print only; do not write docs/performance.md")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    p.add_argument(
        "--profile", default="", metavar="N[,N]", help="after the window at these counts, cProfile the server for another window"
    )
    p.add_argument(
        "--profile-stalled", action="store_true", help="after the stalled run, cProfile the server through a second one (printed only)"
    )
    p.add_argument("--profile-top", type=int, default=15, help="functions to show per profile (default: %(default)s)")
    p.add_argument("--x11-size", default="1920x1080", help="part x11: the Xvfb screen (default: %(default)s)")
    p.add_argument("--x11-counts", default="1,4,16,64", help="part x11: client counts (default: %(default)s)")
    p.add_argument("--x11-workloads", default="drag,repaint", help="part x11: drag and/or repaint (default: %(default)s)")
    p.add_argument("--x11-codecs", default="lz4,glz", help=f"part x11: of {', '.join(X11_CODECS)} (default: %(default)s)")
    p.add_argument("--x11-transports", default="tcp,tls", help="part x11: tcp and/or tls (default: %(default)s)")
    p.add_argument("--x11-seconds", type=float, default=3.0, help="part x11: measurement window (default: %(default)s)")
    p.add_argument("--x11-max-fps", type=float, default=30.0, help="part x11: the server's --max-fps (default: %(default)s)")
    p.add_argument("--tls-write-size", type=int, default=25000, help="part tlswrite: payload bytes per message (default: %(default)s)")
    p.add_argument("--tls-write-frames", type=int, default=300, help="part tlswrite: frames measured per run (default: %(default)s)")
    p.add_argument("--tls-write-repeat", type=int, default=4, help="part tlswrite: runs of each kind (default: %(default)s)")
    p.add_argument("--x11-profile", default="drag", help="part x11: workloads profiled at the --profile counts (default: %(default)s)")
    p.add_argument("--server-root", type=Path, help="run the server children from this checkout (an older commit: before/after)")
    p.add_argument("--before", type=Path, metavar="JSON", help="a --json of the same run on the code before: the x11 section shows both")
    args = p.parse_args(argv)
    if args.server_root is not None:
        SERVER_ROOT[0] = args.server_root.resolve()
    args.x11_size = tuple(int(v) for v in args.x11_size.split("x"))
    args.x11_counts = [int(v) for v in args.x11_counts.split(",") if v]
    args.x11_workloads = [w for w in args.x11_workloads.split(",") if w]
    args.x11_codecs = [c for c in args.x11_codecs.split(",") if c]
    args.x11_transports = [t for t in args.x11_transports.split(",") if t]
    args.x11_profile = {w for w in args.x11_profile.split(",") if w}
    INLINE[:] = args.inline
    args.parts = [x for x in args.parts.split(",") if x]
    args.modes = [x for x in args.modes.split(",") if x]
    args.stalled_modes = [x for x in args.stalled_modes.split(",") if x]
    args.counts = [int(x) for x in args.counts.split(",") if x]
    args.profile = {int(x) for x in args.profile.split(",") if x}
    if not set(args.parts) <= {"fanout", "stalled", "x11", "tlswrite"}:
        p.error("--parts takes fanout, stalled, x11 and/or tlswrite")
    if not set(args.modes) | set(args.stalled_modes) <= set(MODES):
        p.error(f"modes are {', '.join(MODES)}")
    if not args.counts or min(args.counts) < 1:
        p.error("--counts needs positive integers")
    return args


async def run_fanout(args: argparse.Namespace, tmp: Path, loads: list[str]) -> list[dict[str, Any]]:
    results = []
    for n in args.counts:
        for mode in args.modes:  # modes interleaved per N: the ratios between them come from neighbouring runs
            loads.append(load_average().split()[0])
            t = time.monotonic()
            r = await measure(n, mode, args, tmp)
            results.append(r)
            note = ""
            if r["client_disconnects"] or r["stalled_disconnects"] or r["server_log_problems"] or r["exact"] != n or r["wrong_type"]:
                note = (
                    f"  !! disconnects={r['client_disconnects']} stalled={r['stalled_disconnects']} exact={r['exact']}/{n} "
                    f"wrong_type={r['wrong_type']} errors={r['decode_errors'][:2]} log: {r['server_log_problems'][:3]}"
                )
            print(
                f"{mode:>4} N={n:>3}: {r['updates_per_s_client']:.1f} upd/s/client, {r['cpu_per_update_us']:.0f} us CPU/update, "
                f"{r['frame_ms']:.3f} ms/frame, encodes={fmt_enc(r['encodes_by_codec'])} (threaded {r['encodes_threaded']}) "
                f"sends={r['sends']}, exact {r['exact']}/{n} (connect+first frame {r['connect_s']:.1f} s, run "
                f"{time.monotonic() - t:.1f} s){note}",
                flush=True,
            )
    return results


async def run_stalled(args: argparse.Namespace, tmp: Path, loads: list[str]) -> list[dict[str, Any]]:
    rows = []
    for mode in args.stalled_modes:
        for rep in range(args.stalled_repeat):
            # alternate the order, so a drift in the machine's load does not always favour one arm
            for k in (0, args.stalled) if rep % 2 == 0 else (args.stalled, 0):
                loads.append(load_average().split()[0])
                t = time.monotonic()
                r = await measure_stalled(k, mode, args, tmp, profile=args.profile_stalled and rep == 0)
                r["rep"] = rep
                rows.append(r)
                print(
                    f"{mode:>4} rep {rep} stalled={k}: {r['updates']} updates in {r['wall_s']:.2f} s, server CPU {r['server_cpu_s']:.2f} s, "
                    f"reactor {r['reactor_cpu_s']:.2f} s, {r['frame_us']:.0f} us/frame, stalled peak {r['stalled_peak_items']} items "
                    f"{r['stalled_peak_bytes']} B, reader exact {r['reader_exact']} (run {time.monotonic() - t:.1f} s)"
                    + (f"  log: {r['server_log_problems'][:3]}" if r["server_log_problems"] else ""),
                    flush=True,
                )
    return rows


TLS_READER = """
import selectors, socket, ssl, sys
port, n, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sel = selectors.DefaultSelector()
ctx = ssl.create_default_context(cafile=ca) if ca else None
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(s, server_hostname="127.0.0.1") if ctx else s
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        try:
            while key.fileobj.recv(1 << 20):
                pass
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
"""


def measure_tls_write(kind: str, n: int, size: int, frames: int, certs: dict[str, Path]) -> dict[str, Any]:
    """The write path alone, in this process: one message (6-byte header, 100-byte prefix,
    `size` shared payload bytes) per frame to each of n connections read by a child
    process, the reactor iterated between frames; the reactor thread's user and system
    CPU per client and frame. `twisted`: Twisted's TLSMemoryBIOProtocol with pyOpenSSL's
    partial writes (the TLS port before tls_write.py); `direct`: the TLS port's protocol
    now; `tcp`: the plain display channel's vectored writer, for reference."""
    from twisted.internet.epollreactor import EPollReactor
    from twisted.internet.protocol import Factory, Protocol
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    from spice_twisted.channels.vector_write import VectorWriter
    from spice_twisted.tls import RecordPerWriteTLSFactory, server_context, tls_listener_factory

    reactor = EPollReactor()
    conns: list[Any] = []

    class Sink(Protocol):
        def connectionMade(self) -> None:
            conns.append(self)

    wrapped = Factory.forProtocol(Sink)
    if kind == "tcp":
        factory: Any = wrapped
    else:
        ctx = server_context(str(certs["cert"]), str(certs["key"]))
        if kind == "twisted":
            ctx.getContext().set_mode(0x1)  # SSL_MODE_ENABLE_PARTIAL_WRITE, pyOpenSSL's default

            class Before(RecordPerWriteTLSFactory):
                protocol = TLSMemoryBIOProtocol

            factory = Before(ctx, False, wrapped)
        else:
            factory = tls_listener_factory(ctx, wrapped)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    ca = "" if kind == "tcp" else str(certs["ca"])
    reader = subprocess.Popen([sys.executable, "-c", TLS_READER, str(port.getHost().port), str(n), ca])
    try:
        deadline = time.monotonic() + 30
        while len(conns) < n and time.monotonic() < deadline:
            reactor.iterate(0.01)
        for _ in range(20):
            reactor.iterate(0.01)
        parts = [b"h" * 6, b"p" * 100, os.urandom(size)]
        writers = [VectorWriter(c.transport) for c in conns] if kind == "tcp" else []

        def frame() -> None:
            if writers:
                for w in writers:
                    w.write(parts)
            else:
                for c in conns:
                    c.transport.writeSequence(parts)
            reactor.iterate(0)
            reactor.iterate(0.03)  # the rest of a frame: reads, and what Twisted buffered goes out

        for _ in range(30):
            frame()
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        for _ in range(frames):
            frame()
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
    finally:
        reader.kill()
        reader.wait()
        port.stopListening()
    per = 1e6 / frames / n
    user, system = (r1.ru_utime - r0.ru_utime) * per, (r1.ru_stime - r0.ru_stime) * per
    return {"kind": kind, "clients": n, "size": size, "user_us": user, "system_us": system, "us": user + system}


def run_tls_write(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.certs import make_ca_and_server

    certs = make_ca_and_server(tmp)
    rows = []
    for rep in range(args.tls_write_repeat):
        for kind in ("twisted", "direct", "tcp") if rep % 2 == 0 else ("tcp", "direct", "twisted"):
            r = measure_tls_write(kind, 16, args.tls_write_size, args.tls_write_frames, certs)
            r["rep"] = rep
            rows.append(r)
            print(
                f"tlswrite {kind:>7} N=16 {r['size']} B/message: {r['us']:.1f} us reactor CPU per client and frame "
                f"(user {r['user_us']:.1f}, system {r['system_us']:.1f})",
                flush=True,
            )
    for kind in ("twisted", "direct", "tcp"):
        us = [r["us"] for r in rows if r["kind"] == kind]
        print(f"tlswrite {kind:>7}: median {statistics.median(us):.1f} us per client and frame over {len(us)} runs", flush=True)
    return rows


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"fanout": [], "stalled": [], "x11": [], "fanout_loads": [], "stalled_loads": [], "x11_loads": []}
    with tempfile.TemporaryDirectory(prefix="spice-fanout-") as tmp:
        if "fanout" in args.parts:
            out["fanout"] = await run_fanout(args, Path(tmp), out["fanout_loads"])
        if "x11" in args.parts:
            out["x11"] = await run_x11(args, Path(tmp), out["x11_loads"])
        if "stalled" in args.parts:
            out["stalled"] = await run_stalled(args, Path(tmp), out["stalled_loads"])
        if "tlswrite" in args.parts:
            out["tlswrite"] = run_tls_write(args, Path(tmp))
    return out


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    out = asyncio.run(amain(args))
    if out["fanout"]:
        print()
        print_table(out["fanout"], COLUMNS)
        for r in out["fanout"]:
            if r["profile"]:
                print_profile(r)
    if out["stalled"]:
        print()
        print_table(out["stalled"], STALLED_COLUMNS)
        for r in out["stalled"]:
            if r["profile"]:
                prof = r["profile"]
                print(f"\ncProfile of the server's reactor thread, {r['mode']} with {r['stalled']} stalled ({prof['total']:.2f} s):")
                for row in prof["top"]:
                    print(f"  {row['tottime']:7.3f} s  {row['ncalls']:>8}  {row['function']}")
    if out["x11"]:
        print()
        print(md_table(X11_HEADER, x11_table_rows(out["x11"])))
        print()
        print(md_table(X11_RATIO_HEADER, x11_ratio_rows(out["x11"], out["fanout"])))
        for r in out["x11"]:
            if r["profile"]:
                print_profile({**r, "mode": f"x11 {r['workload']} {r['codec']} {r['transport']}"})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if not args.no_write:
        if out["x11"]:
            before = json.loads(args.before.read_text()) if args.before else None
            write_section(X11, x11_section(out, before, args, spread(out["x11_loads"] + out["fanout_loads"])))
        if out["fanout"] and not out["x11"]:  # with part x11, the demo rows are that section's baseline
            write_section(FANOUT, fanout_section(out["fanout"], args, spread(out["fanout_loads"])), keep=ARCHIVE)
        if out["stalled"]:
            write_section(STALLED, stalled_section(out["stalled"], args, spread(out["stalled_loads"])))
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    print(f"total {time.monotonic() - started:.0f} s")


def spread(loads: list[str]) -> list[str]:
    vals = [float(x) for x in loads if x != "?"]
    return [f"{min(vals):.2f}-{max(vals):.2f}", f"median {statistics.median(vals):.2f}"] if vals else ["?"]


if __name__ == "__main__":
    main()
