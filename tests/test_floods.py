"""Hostile floods against a real server (issue 8): the reactor stays live, memory stays
bounded, and the spice-gtk clients watching end exact.

RSS is read from /proc/PID/status of the harness process by the test itself, never from
the server's own counters. The liveness bound (a fresh link in under 5 s while the
server digests the flood) is generous on purpose: it catches a frozen reactor, it is
not a benchmark.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
from support.display_decode import Screen
from support.processes import assert_clients_match, wait_until
from support.rawclient import link, link_bytes, read_reply, recv_exact

from spice_twisted.sources.demo import MAX_TEXT
from spice_twisted.wire.client_link import ticket_message
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcCommon, MsgcDisplay, MsgcInputs, MsgCommon, MsgMain
from spice_twisted.wire.messages import CLIENT, SERVER, decode_body, encode_body

LIVENESS_S = 5.0
RSS_GROWTH_LIMIT_KB = 200 * 1024
# By default the server refuses a KEY_SCANCODE message over 256 bytes (as upstream refuses
# large inputs messages; see the limit tests). These tests raise the limits to 1 MiB to
# show that even then a flood costs a few frames of work and bounded memory.
RAISED_LIMITS = ("--max-message", "inputs:KEY_SCANCODE=1M", "--max-connection-buffer", "2M")
MINI = struct.Struct("<HI")
INPUTS = ChannelType.INPUTS


def msg(channel, msg_id, fields) -> bytes:
    """One client message with a mini header."""
    body = encode_body(CLIENT[(channel, msg_id)], fields)
    return MINI.pack(msg_id, len(body)) + body


class Drain(threading.Thread):
    """Reads a socket until it closes (what the server sends is of no interest)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.bytes = 0
        sock.settimeout(None)
        self.start()

    def run(self) -> None:
        try:
            while data := self.sock.recv(65536):
                self.bytes += len(data)
        except OSError:
            pass


def raw_session(port: int) -> tuple[socket.socket, int]:
    """A raw main channel: linked, its INIT read for the session id (mini headers)."""
    main, result = link(port)
    assert result == LinkError.OK
    msg_type, size = MINI.unpack(recv_exact(main, MINI.size))
    body = recv_exact(main, size)
    assert msg_type == MsgMain.INIT
    return main, decode_body(SERVER[(ChannelType.MAIN, MsgMain.INIT)], body)["session_id"]


def raw_inputs(port: int) -> tuple[list[socket.socket], int, socket.socket]:
    """A raw client with main and inputs channels; returns (sockets to close, session id, inputs)."""
    main, sid = raw_session(port)
    inputs, result = link(port, channel=INPUTS, connection_id=sid)
    assert result == LinkError.OK
    Drain(main)
    return [main, inputs], sid, inputs


def close_all(socks: list[socket.socket]) -> None:
    """shutdown() first: a plain close() leaves a socket open while a Drain thread reads it."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RssPeak(threading.Thread):
    """Samples a process's RSS until stopped; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.baseline = self.peak = rss_kb(pid)
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except OSError:
                return

    def stop(self) -> int:
        self._stop_event.set()
        self.join(5)
        self.peak = max(self.peak, rss_kb(self.pid))
        return self.peak - self.baseline


class TimedLink(threading.Thread):
    """A fresh main-channel link, timed: `seconds` and `result` once done."""

    def __init__(self, port: int, delay: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.port, self.delay = port, delay
        self.seconds: float | None = None
        self.result: int | None = None
        self.error: BaseException | None = None
        self.sock: socket.socket | None = None
        self.start()

    def run(self) -> None:
        time.sleep(self.delay)
        t0 = time.monotonic()
        try:
            self.sock, self.result = link(self.port)
        except BaseException as exc:  # noqa: BLE001 - reported by check()
            self.error = exc
        self.seconds = time.monotonic() - t0

    def check(self) -> float:
        self.join(60)
        assert self.error is None, f"the link failed: {self.error!r}"
        assert self.result == LinkError.OK, self.result
        assert self.seconds is not None and self.seconds < LIVENESS_S, f"a new link took {self.seconds:.1f}s during the flood"
        if self.sock is not None:
            self.sock.close()
        return self.seconds


def watchers(spawn, server, n: int = 2) -> list:
    out = []
    for _ in range(n):
        c = spawn.client("--port", str(server.port))
        c.wait_event("mark")
        c.wait_event("channel", channel="inputs", what="opened")
        out.append(c)
    return out


def assert_exact(server, clients) -> np.ndarray:
    expect = assert_clients_match(server, clients)
    log = server.stderr()
    for bad in ("Traceback", "Unhandled"):
        assert bad not in log, log[max(0, log.index(bad) - 2000) : log.index(bad) + 3000]
    return expect


def client_stats(server, sid: int) -> dict | None:
    return next((c for c in server.stats()["clients"] if c["id"] == sid), None)


def test_one_mebibyte_key_scancode_message(spawn):
    server = spawn.harness(*RAISED_LIMITS)
    watching = watchers(spawn, server)
    socks, sid, inputs = raw_inputs(server.port)
    try:
        wait_until(lambda: any(ch["channel"] == "inputs" for ch in (client_stats(server, sid) or {}).get("channels", [])))
        time.sleep(0.5)
        rss = RssPeak(server.proc.pid)
        body = b"\x1e" * (1 << 20)  # 1 MiB of 'a' presses: the server's per-message limit
        inputs.sendall(MINI.pack(MsgcInputs.KEY_SCANCODE, len(body)) + body)
        probe = TimedLink(server.port)
        probe.check()
        wait_until(lambda: server.stats()["source_state"]["typed"] == "a" * MAX_TEXT, timeout=60, what="the typed text")
        wait_until(lambda: client_stats(server, sid)["input_events"] >= 1 << 20, timeout=60, what="every key counted")
        time.sleep(0.3)
        growth = rss.stop()
        assert growth < RSS_GROWTH_LIMIT_KB, f"server RSS grew by {growth // 1024} MB"
        server.pause()
        before = assert_exact(server, watching)
        # Still serving: a new spice-gtk client comes in and sees the same screen.
        late = spawn.client("--port", str(server.port))
        late.wait_event("mark")
        assert np.array_equal(assert_exact(server, [*watching, late]), before)
    finally:
        close_all(socks)


def _stroke_points(n: int) -> list[tuple[int, int]]:
    """A zig-zag from x=100 to x=900 around y=450 (the demo's backdrop there is plain)."""
    return [(100 + 800 * i // (n - 1), 450 + abs((i % 400) - 200) // 10) for i in range(n)]


def test_ten_thousand_message_held_button_stroke(spawn):
    server = spawn.harness()
    watching = watchers(spawn, server)
    socks, sid, inputs = raw_inputs(server.port)
    try:
        wait_until(lambda: any(ch["channel"] == "inputs" for ch in (client_stats(server, sid) or {}).get("channels", [])))
        assert server.stats()["mouse_mode"] == "client"  # absolute positions
        colour = client_stats(server, sid)["colour"]
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
        points = _stroke_points(10_000)
        pos = lambda x, y, b: msg(INPUTS, MsgcInputs.MOUSE_POSITION, {"x": x, "y": y, "buttons_state": b, "display_id": 0})  # noqa: E731
        stroke = [pos(*points[0], 0), msg(INPUTS, MsgcInputs.MOUSE_PRESS, {"button": 1, "buttons_state": 1})]
        stroke += [pos(x, y, 1) for x, y in points]
        stroke.append(msg(INPUTS, MsgcInputs.MOUSE_RELEASE, {"button": 1, "buttons_state": 0}))
        events = client_stats(server, sid)["input_events"]
        time.sleep(0.5)
        rss = RssPeak(server.proc.pid)
        inputs.sendall(b"".join(stroke))  # as fast as the socket takes it
        probe = TimedLink(server.port)
        probe.check()
        wait_until(lambda: client_stats(server, sid)["input_events"] >= events + len(stroke), timeout=60, what="every stroke message")
        time.sleep(0.3)
        growth = rss.stop()
        assert growth < RSS_GROWTH_LIMIT_KB, f"server RSS grew by {growth // 1024} MB"
        server.pause()
        fb = assert_exact(server, watching)
        # The stroke is there, in the raw client's colour (the ball may cover a little of it).
        on = np.mean([np.array_equal(fb[y, x], rgb) for x, y in points[::50]])
        assert on > 0.9, f"only {on:.0%} of the stroke shows"
        late = spawn.client("--port", str(server.port))
        late.wait_event("mark")
        assert_exact(server, [*watching, late])
    finally:
        close_all(socks)


class StalledDisplay:
    """A raw client that links main and display, sends DISPLAY_INIT and then reads nothing
    (a small receive buffer), until `catch_up()` reads it all, answering the ACK window
    like spice-gtk, and decodes what arrived."""

    def __init__(self, port: int) -> None:
        self.main, sid = raw_session(port)
        self.session_id = sid
        d = socket.socket()
        d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        d.connect(("127.0.0.1", port))
        d.settimeout(10)
        d.sendall(link_bytes(ChannelType.DISPLAY, sid))
        reply = read_reply(d)
        d.sendall(ticket_message(reply["pub_key"], b""))
        assert struct.unpack("<I", recv_exact(d, 4))[0] == LinkError.OK
        d.sendall(
            msg(
                ChannelType.DISPLAY,
                MsgcDisplay.INIT,
                {"pixmap_cache_id": 1, "pixmap_cache_size": 0, "glz_dictionary_id": 0, "glz_dictionary_window_size": 0},
            )
        )
        self.display = d
        self.messages: list[tuple[int, bytes]] = []

    def catch_up(self, quiet: float = 1.5, timeout: float = 60.0) -> Screen:
        """Read until the server has nothing more for us for `quiet` seconds."""
        sock, buf = self.display, bytearray()
        window = countdown = 0
        sock.settimeout(quiet)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                break
            buf += data
            while len(buf) >= MINI.size:
                msg_type, size = MINI.unpack_from(buf)
                if len(buf) < MINI.size + size:
                    break
                body = bytes(buf[MINI.size : MINI.size + size])
                del buf[: MINI.size + size]
                self.messages.append((msg_type, body))
                if msg_type == MsgCommon.SET_ACK:
                    f = decode_body(SERVER[(None, MsgCommon.SET_ACK)], body)
                    window = countdown = f["window"]
                    sock.sendall(msg(None, MsgcCommon.ACK_SYNC, {"generation": f["generation"]}))
                elif window:
                    countdown -= 1
                    if countdown == 0:
                        countdown = window
                        sock.sendall(msg(None, MsgcCommon.ACK, {}))
        screen = Screen()
        screen.feed(self.messages)
        return screen

    def close(self) -> None:
        close_all([self.main, self.display])


def test_four_stalled_clients_and_twenty_thousand_updates(spawn, random_image):
    path, rgb = random_image
    server = spawn.harness("--source", f"image:{path}", "--stall-timeout", "600")
    fifth = spawn.client("--port", str(server.port))
    fifth.wait_event("mark")
    stalled = [StalledDisplay(server.port) for _ in range(4)]
    try:
        ids = {s.session_id for s in stalled}

        def stalled_displays() -> list[dict]:
            return [ch for c in server.stats()["clients"] if c["id"] in ids for ch in c["channels"] if ch["channel"] == "display"]

        wait_until(lambda: len(stalled_displays()) == 4, what="four stalled display channels")
        time.sleep(0.5)
        rss = RssPeak(server.proc.pid)
        probe = TimedLink(server.port, delay=0.5)  # links while the updates run
        r = server.command("updates 20000", "updates", timeout=300)
        assert r.get("count") == 20000 and r.get("frames") == 20000, r
        probe.check()
        displays = stalled_displays()
        assert len(displays) == 4  # nobody was disconnected (--stall-timeout 600)
        for d in displays:
            assert d["pipe_peak_items"] <= d["pipe_max_items"] + 1, d
            assert d["pipe_peak_bytes"] <= d["pipe_max_bytes"], d
            assert d["pipe_items"] <= d["pipe_max_items"] and d["pipe_bytes"] <= d["pipe_max_bytes"], d
            assert d["collapses"] >= 1 and d["coalesced"] > 10_000, d  # it really fell behind
        growth = rss.stop()
        assert growth < RSS_GROWTH_LIMIT_KB, f"server RSS grew by {growth // 1024} MB"
        expect = assert_exact(server, [fifth])
        assert not np.array_equal(expect, rgb)  # the updates are on screen
        # The stalled clients start reading: each catches up to the same final picture.
        fb = server.framebuffer()
        for s in stalled:
            screen = s.catch_up()
            assert screen.fb is not None
            n = int(np.any(screen.fb[..., :3] != fb[..., :3], axis=2).sum())
            assert n == 0, f"a stalled client, once reading, differs from the server in {n} pixels"
            assert screen.draws < 200, screen.draws  # a refresh, not 20,000 updates
        sock, result = link(server.port)  # and the server still answers
        assert result == LinkError.OK
        sock.close()
    finally:
        for s in stalled:
            s.close()


def test_streams_of_key_scancode_messages_keep_the_server_live(spawn):
    """A 1 MiB KEY_SCANCODE message is a million key events (about 1.3 s of Python): the
    channel handles them in batches within a per-turn budget, with reading paused past
    it. Two clients send such messages back to back; a spice-gtk client connecting
    meanwhile must still get its screen within the liveness bound (it needs a dozen
    reactor turns to link its four channels)."""
    server = spawn.harness(*RAISED_LIMITS)
    t0 = time.monotonic()
    watching = watchers(spawn, server)
    alone = (time.monotonic() - t0) / len(watching)  # a client's start on this machine now, no flood
    flooders = [raw_inputs(server.port) for _ in range(2)]
    body = b"\x1e" * (1 << 20)
    message = MINI.pack(MsgcInputs.KEY_SCANCODE, len(body)) + body
    stop = threading.Event()

    def flood(inputs: socket.socket) -> None:
        for _ in range(30):  # at most 30 MiB each, as fast as the server takes them
            if stop.is_set():
                return
            try:
                inputs.sendall(message)
            except OSError:
                return

    for _, _, inputs in flooders:
        threading.Thread(target=flood, args=(inputs,), daemon=True).start()
    try:
        time.sleep(1.0)  # the server is busy with the streams
        t0 = time.monotonic()
        late = spawn.client("--port", str(server.port))
        late.wait_event("mark", timeout=120)
        took = time.monotonic() - t0
    finally:
        stop.set()
        for socks, _, _ in flooders:
            close_all(socks)  # the server drops what it has not read yet
    # The bound: LIVENESS_S, or three times what a start took without the flood on a
    # machine loaded by other work (a ratio measured in this run).
    assert took < max(LIVENESS_S, 3 * alone), (
        f"a spice-gtk client needed {took:.1f}s to see the screen during the streams ({alone:.1f}s without)"
    )
    for _, sid, _ in flooders:
        wait_until(lambda sid=sid: client_stats(server, sid) is None, timeout=60, what="the flooding clients gone")
    server.pause()
    assert_exact(server, [*watching, late])
