"""The real server, built exactly as `twistd spice` builds it, plus a control line on stdin.

Tests use it to read the stats object, dump the server's framebuffer, pause the
source (so frames can be compared) and flip policies at run time, until the
admin API offers the same. Replies are JSON lines on stdout.
Usage: python server_harness.py [--paused] -- <twistd spice options>

Commands (one a line; each answers with {"reply": <command>, ...}):
  stats / dump PATH / pause / resume / allow_multiple_clients 0|1 / view_only SID 0|1 / quit
  primary SID       hand control to client SID (SpiceServer.set_primary, as the admin does)
  desktop_abilities CLIP RESIZE   the source's DesktopAgent takes text (CLIP=1) / resizes
                    (RESIZE=1) or not, then AgentSink.desktop_changed()
  resize W H        the source serves a W x H screen (image sources); replies the new size
  count_codecs      wrap every codecs.ENCODERS entry with a counting wrapper (once)
  codec_calls       {"calls": {codec: encodes}, "pixels": {codec: pixels encoded}} since count_codecs
  glz_everyone Z [WINDOW [FIRST]]  every display client gets GLZ from one dictionary of
                    WINDOW pixels (Z=1: in its ZLIB_GLZ form), ids from FIRST (0),
                    encoded on the reactor in commit order with ids 0, 1, 2... A test scaffold
                    for the encoder's format only: no drop or late-join policy (issue 17)
  updates N         N small updates, each its own frame (a 4x4 square of a new colour,
                    damage, flush), ~200 per reactor turn; replies once all are done
  flush             run the pending frame now
  copy L T R B X Y  move the area (L T R B) so its top left lands at (X, Y): a COPY_BITS
  lossless_after S  areas clients hold lossy go lossless once quiet for S seconds (0.5)
  video on|off      the demo's video window (sources/demo_video.py)
  paste PATH X Y    draw the picture in PATH (a .npy of H x W x 4 B G R X) at (X, Y), one frame
  busy SECONDS [SIZE]  for SECONDS, 30 times a second, a SIZE x SIZE square (default 128) of
                    random pixels at a new place (incompressible: a display that keeps any
                    slow link backlogged); replies at once; `busy 0` stops it
  agent_resize W H  the source's desktop agent is asked for a W x H desktop (as a client's
                    monitor config would); replies when the call returns
  agent_record      the source's desktop agent reports to a recording sink (which passes
                    every call on to the sink the server gave it, if any)
  agent_calls       {"calls": [[selection, {mime: base64} or null], ...]} recorded so far
  agent_set_clipboard SEL PATH  the desktop's SEL becomes the JSON {mime: base64} in PATH
                    ("-": released), as a client's copy allowed by the policy would
  agent_state       {"clipboard_types": [...], "can_resize": bool} of the source's agent
  rss               this process's VmRSS in kB
  timers            the reactor's pending delayed calls, counted by the class of their owner
"""

from __future__ import annotations

import base64
import json
import sys
import threading

import numpy as np
from twisted.internet import reactor, stdio, task
from twisted.protocols.basic import LineReceiver
from twisted.python import log

from spice_twisted import codecs
from spice_twisted.codecs import glz, video
from spice_twisted.options import Options
from spice_twisted.render.rect import Rect
from spice_twisted.service import make_service
from spice_twisted.stats import server_stats

UPDATES_PER_TURN = 200

# Calls at the codec boundary (codec pool threads and the reactor both encode: a lock).
_codec_lock = threading.Lock()
codec_calls: dict[str, int] = {}
codec_pixels: dict[str, int] = {}


def install_codec_counters() -> None:
    """Wrap every encoder in codecs.ENCODERS (looked up at each encode) with a counter."""
    for name, fn in list(codecs.ENCODERS.items()):
        if getattr(fn, "counting", False):
            continue

        def counted(pixels, _fn=fn, _name=name):
            with _codec_lock:
                codec_calls[_name] = codec_calls.get(_name, 0) + 1
                codec_pixels[_name] = codec_pixels.get(_name, 0) + pixels.shape[0] * pixels.shape[1]
            return _fn(pixels)

        counted.counting = True  # type: ignore[attr-defined]
        codecs.ENCODERS[name] = counted
        with _codec_lock:
            codec_calls.setdefault(name, 0)
            codec_pixels.setdefault(name, 0)
    # VP8, VP9 and H.264 are not either: their boundary is StatefulEncoder.encode, one call
    # per frame of a stream, counted under its tier's name ("vp8", "vp8_low", ...).
    real_stateful = video.StatefulEncoder.encode
    if not getattr(real_stateful, "counting", False):

        def counted_stateful(self, pixels, key, _real=real_stateful):
            with _codec_lock:
                codec_calls[self.tier] = codec_calls.get(self.tier, 0) + 1
                codec_pixels[self.tier] = codec_pixels.get(self.tier, 0) + pixels.shape[0] * pixels.shape[1]
            return _real(self, pixels, key)

        counted_stateful.counting = True  # type: ignore[attr-defined]
        video.StatefulEncoder.encode = counted_stateful  # type: ignore[method-assign]
    # GLZ is not a stateless encoder: its boundary is GlzEncoder.encode, one call per image
    # of a dictionary generation, whatever the number of its members ("glz", and per
    # generation "glz:<n>" by the encoder's id).
    real = glz.GlzEncoder.encode
    if not getattr(real, "counting", False):

        def counted_glz(self, pixels, image_id, min_ref_id=0, _real=real):
            key = f"glz:{id(self):x}"
            with _codec_lock:
                for k in ("glz", key):
                    codec_calls[k] = codec_calls.get(k, 0) + 1
                    codec_pixels[k] = codec_pixels.get(k, 0) + pixels.shape[0] * pixels.shape[1]
            return _real(self, pixels, image_id, min_ref_id)

        counted_glz.counting = True  # type: ignore[attr-defined]
        glz.GlzEncoder.encode = counted_glz  # type: ignore[method-assign]
        with _codec_lock:
            codec_calls.setdefault("glz", 0)
            codec_pixels.setdefault("glz", 0)


def serve_glz_to_everyone(zlib_form: bool, window: int | None, first: int = 0) -> None:
    from spice_twisted.channels.display import DisplayChannelClient
    from spice_twisted.codecs import glz

    encoder, ids = glz.GlzEncoder(window or glz.DEFAULT_WINDOW_PIXELS), iter(range(first, 2**39))

    def encode(pixels: np.ndarray) -> codecs.Payload:
        payload = encoder.encode(pixels, next(ids))
        return (glz.zlib_glz(payload) or payload) if zlib_form else payload

    codecs.ENCODERS["glz"] = encode
    codecs.INLINE_PIXELS["glz"] = 2**62  # on the reactor: ids in commit order
    DisplayChannelClient.codec = property(lambda self: "glz")  # type: ignore[assignment]
    DisplayChannelClient.glz_candidate = lambda self: None  # type: ignore[method-assign]  (no GLZ groups beside it)


def vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class AgentRecorder:
    """A sink for the source's desktop agent that keeps every call (a test's boundary)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.changes = inner, [], 0

    def desktop_clipboard(self, selection, contents) -> None:
        self.calls.append([selection, None if contents is None else {k: base64.b64encode(v).decode() for k, v in contents.items()}])
        if self.inner is not None:
            self.inner.desktop_clipboard(selection, contents)

    def desktop_changed(self) -> None:
        self.changes += 1
        if self.inner is not None:
            self.inner.desktop_changed()


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, top) -> None:
        self.top = top
        self.server = top.spice_server

    def reply(self, **obj) -> None:
        self.transport.write(json.dumps(obj).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if not words:
            return
        try:
            self.command(words[0], words[1:])
        except Exception as exc:  # a failed command still answers, so the test does not hang
            log.err(None, f"harness command {line!r} failed")
            self.reply(reply=words[0], error=f"{type(exc).__name__}: {exc}")

    def command(self, cmd: str, args: list[str]) -> None:
        srv = self.server
        if cmd == "stats":
            self.reply(reply="stats", stats=server_stats(srv))
        elif cmd == "dump":
            srv.render.primary.pixels.tofile(args[0])
            self.reply(reply="dump", width=srv.render.width, height=srv.render.height)
        elif cmd == "agent_record":
            agent = srv.source.desktop_agent()
            self.agent_recorder = AgentRecorder(getattr(agent, "sink", None))
            agent.start_agent(self.agent_recorder)
            self.reply(reply="agent_record")
        elif cmd == "agent_calls":
            self.reply(reply="agent_calls", calls=self.agent_recorder.calls, changes=self.agent_recorder.changes)
        elif cmd == "agent_set_clipboard":
            contents = None
            if args[1] != "-":
                with open(args[1]) as f:
                    contents = {k: base64.b64decode(v) for k, v in json.load(f).items()}
            srv.source.desktop_agent().set_clipboard(args[0], contents)
            self.reply(reply="agent_set_clipboard")
        elif cmd == "agent_state":
            agent = srv.source.desktop_agent()
            self.reply(reply="agent_state", clipboard_types=sorted(agent.clipboard_types), can_resize=agent.can_resize)
        elif cmd == "agent_resize":
            agent = srv.source.desktop_agent()
            if agent is None or not agent.can_resize:
                self.reply(reply="agent_resize", error="the source cannot resize")
            else:
                agent.resize(int(args[0]), int(args[1]))
                self.reply(reply="agent_resize")
        elif cmd == "pause":
            srv.source.paused = True
            self.reply(reply="pause")
        elif cmd == "video":  # the demo's video window on or off (sources/demo_video.py)
            srv.source.set_video(args[0] == "on")
            self.reply(reply="video", on=srv.source.video)
        elif cmd == "resume":
            srv.source.paused = False
            self.reply(reply="resume")
        elif cmd == "allow_multiple_clients":
            srv.set_allow_multiple_clients(args[0] == "1")
            self.reply(reply="allow_multiple_clients", value=srv.allow_multiple_clients)
        elif cmd == "view_only":
            srv.set_view_only(int(args[0]), args[1] == "1")
            self.reply(reply="view_only")
        elif cmd == "primary":  # hand control to a client (as the admin API does)
            srv.set_primary(int(args[0]))
            self.reply(reply="primary", primary=srv.primary.session_id if srv.primary else None)
        elif cmd == "desktop_abilities":  # CLIP RESIZE (0/1): as a VM whose own agent came or went
            from spice_twisted.sources.desktop_agent import TEXT

            srv.source.clipboard_types = frozenset({TEXT}) if args[0] == "1" else frozenset()
            srv.source.can_resize = args[1] == "1"
            srv.agent_hub.desktop_changed()
            self.reply(reply="desktop_abilities")
        elif cmd == "resize":
            srv.source.resize(int(args[0]), int(args[1]))
            self.reply(reply="resize", width=srv.render.width, height=srv.render.height)
        elif cmd == "count_codecs":
            install_codec_counters()
            self.reply(reply="count_codecs", codecs=sorted(codecs.ENCODERS))
        elif cmd == "glz_everyone":
            window, first = (int(a) for a in [*args[1:], "0", "0"][:2])
            serve_glz_to_everyone(args[0] == "1", window or None, first)
            self.reply(reply="glz_everyone")
        elif cmd == "codec_calls":
            with _codec_lock:
                self.reply(reply="codec_calls", calls=dict(codec_calls), pixels=dict(codec_pixels))
        elif cmd == "updates":
            self.updates(int(args[0]))
        elif cmd == "flush":
            srv.render.flush()
            self.reply(reply="flush")
        elif cmd == "copy":
            left, top, right, bottom, x, y = map(int, args)
            srv.render.copy_bits(Rect(left, top, right, bottom), x, y)
            srv.render.flush()
            self.reply(reply="copy", copies=srv.render.counters.copies)
        elif cmd == "lossless_after":
            srv.render.set_lossless_after(float(args[0]))
            self.reply(reply="lossless_after", seconds=srv.render.lossless_after)
        elif cmd == "pixmap_cache_entries":  # the server-wide and per-client model bounds, small
            budget = srv.display_settings.pixmap_caches
            budget.total, budget.per_client = int(args[0]), int(args[1])
            self.reply(reply="pixmap_cache_entries", total=budget.total, per_client=budget.per_client)
        elif cmd == "paste":
            img = np.load(args[0])
            x, y = int(args[1]), int(args[2])
            h, w = img.shape[:2]
            srv.render.primary.pixels[y : y + h, x : x + w] = img
            srv.render.damage(Rect(x, y, x + w, y + h))
            srv.render.flush()
            self.reply(reply="paste")
        elif cmd == "busy":
            self.busy(float(args[0]), int(args[1]) if len(args) > 1 else 128)
            self.reply(reply="busy", seconds=float(args[0]))
        elif cmd == "timers":
            owners: dict[str, int] = {}
            for dc in reactor.getDelayedCalls():
                owner = type(getattr(dc.func, "__self__", dc.func)).__name__
                owners[owner] = owners.get(owner, 0) + 1
            self.reply(reply="timers", owners=owners)
        elif cmd == "rss":
            self.reply(reply="rss", kb=vm_rss_kb())
        # --- audio (tests/test_audio*.py) ---
        elif cmd == "audio_volume":  # levels 0-65535, one per channel
            srv.playback.set_volume([int(v) for v in args])
            self.reply(reply="audio_volume", volume=srv.playback.volume)
        elif cmd == "audio_mute":
            srv.playback.set_mute(args[0] == "1")
            self.reply(reply="audio_mute", mute=srv.playback.mute)
        elif cmd == "quit":
            self.reply(reply="quit")
            reactor.stop()
        else:
            self.reply(reply=cmd, error="unknown command")

    def updates(self, n: int) -> None:
        """n small updates, each one frame: a 4x4 square of a new colour somewhere on the
        surface, its damage and a flush. UPDATES_PER_TURN per reactor turn, so the reactor
        keeps serving clients in between."""
        render = self.server.render
        started = render.counters.frames

        def batch(first: int) -> None:
            px = render.primary.pixels  # read each turn: a resize replaces the surface
            h, w = px.shape[:2]
            last = min(first + UPDATES_PER_TURN, n)
            for i in range(first, last):
                x, y = (i * 37) % (w - 4), (i * 53 + (i // 97) * 5) % (h - 4)
                px[y : y + 4, x : x + 4] = ((i * 7) & 255, (i * 13) & 255, (i * 29) & 255, 0)
                render.damage(Rect(x, y, x + 4, y + 4))
                render.flush()
            if last < n:
                reactor.callLater(0, batch, last)
            else:
                self.reply(reply="updates", count=n, frames=render.counters.frames - started)

        reactor.callLater(0, batch, 0)

    _busy: task.LoopingCall | None = None

    def busy(self, seconds: float, size: int) -> None:
        if self._busy is not None and self._busy.running:
            self._busy.stop()
        if seconds <= 0:
            return
        render, rng = self.server.render, np.random.default_rng(12)
        until = reactor.seconds() + seconds
        step = [0]

        def paint() -> None:
            if reactor.seconds() >= until:
                self._busy.stop()
                return
            px = render.primary.pixels
            h, w = px.shape[:2]
            s = min(size, w, h)
            i = step[0] = step[0] + 1
            x, y = (i * 97) % (w - s + 1), (i * 61) % (h - s + 1)
            px[y : y + s, x : x + s] = rng.integers(0, 256, (s, s, 4), dtype=np.uint8)
            render.damage(Rect(x, y, x + s, y + s))

        self._busy = task.LoopingCall(paint)
        self._busy.start(1 / 30)

    def connectionLost(self, reason=None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    argv = sys.argv[1:]
    paused = "--paused" in argv
    argv = [a for a in argv if a != "--paused"]
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    options = Options()
    options.parseOptions(argv)
    log.startLogging(sys.stderr, setStdout=False)
    top = make_service(options, reactor)
    top.spice_server.source.paused = paused
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    sys.stdout.write(json.dumps({"event": "ready"}) + "\n")
    sys.stdout.flush()
    stdio.StandardIO(Control(top))
    reactor.run()


if __name__ == "__main__":
    main()
