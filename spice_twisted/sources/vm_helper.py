#!/usr/bin/python3
"""The VM source's helper: ONE spice-gtk client of the upstream SPICE server.

Run by the system Python (Debian's python3-gi and gir1.2-spiceclientglib-2.0) as a
script, never imported by the server: GLib's main loop lives here, out of the
Twisted reactor, and spice-gtk (the reference decoder of every SPICE image codec
and video stream) decodes what the VM sends. Standard library and gi only: the
system Python has neither numpy nor Twisted.

  fd 0  frames from the source (vm_protocol): Connect first, then input, clipboard, size
  fd 1  frames to the source: state, surface size, damage, cursor, LEDs, mouse mode,
        the VM agent's presence and its clipboard
  fd 2  spice-gtk's own warnings (the source keeps the last lines for a crash report)
  fd 3  a memfd the decoded primary surface is copied into (B G R X, stride width*4);
        this process grows it to fit and the source maps it read-only
  argv  the server's pid: the helper leaves when that process does (PR_SET_PDEATHSIG,
        the end of stdin, a write to the server that fails), so it never holds the VM's
        one SPICE seat after its server is gone

One connection attempt per process: when the upstream is unreachable, refuses our
password or goes away, the helper says so in one StateChanged and exits; the source
starts a new helper after its backoff, so a crash and a lost VM are handled alike.
"""

import ctypes
import mmap
import os
import signal as signals
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """The kernel kills this process when its parent dies; a parent already gone (the
    server died while this process was starting) ends it now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signals.SIGKILL, 0, 0, 0)
    if len(sys.argv) > 1 and os.getppid() != int(sys.argv[1]):
        os._exit(0)


die_with_parent()  # first: importing gi takes long enough for the server to die meanwhile

try:
    from . import vm_protocol as proto  # type: ignore[no-redef]
except ImportError:  # run as a script: this file's folder is sys.path[0]
    import vm_protocol as proto  # type: ignore[no-redef]

    del sys.path[0]  # the other modules beside it are not for this interpreter

import gi  # noqa: E402

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

SHM_FD = 3
CONNECT_TIMEOUT_S = 10
MAX_EARLY_INPUT = 256  # input held until the inputs channel opens
MAX_PENDING = 64  # more damage rects than this before a flush become their bounding box
FORMATS_32BIT = (32, 96)  # SPICE_SURFACE_FMT_32_xRGB, _32_ARGB
signal = GObject.Object.connect


def write_frame(msg) -> None:
    """To the server; when it is gone there is nobody to serve: leave at once (an exception
    here would only be printed by the GLib callback that called us, and the helper would
    go on holding the VM's seat)."""
    data = memoryview(proto.encode(msg))
    try:
        while data:
            n = os.write(1, data)
            data = data[n:]
    except OSError:
        os._exit(0)


class Helper:
    def __init__(self, loop) -> None:
        self.loop = loop
        self.decoder = proto.Decoder(proto.SOURCE_TYPES)
        self.session = None
        self.inputs = None
        self.inputs_ready = False
        self.early_input = []
        self.main = None
        self.upstream = ""
        self.max_pixels, self.max_side = proto.MAX_SURFACE_SIDE**2, proto.MAX_SURFACE_SIDE
        self.primary = None  # (width, height, stride, address)
        self.shm = None
        self.shm_addr = 0
        self.pending = []
        self.flush_armed = False
        # One wake-up for every flush: an eventfd watched once, at idle priority. A new GLib
        # source each flush (GLib.idle_add) leaks ~110 bytes in python3-gi 3.42: 2.5 MB/s
        # on a busy VM.
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        GLib.io_add_watch(self.wake, GLib.PRIORITY_DEFAULT_IDLE, GLib.IO_IN, self.on_wake)
        self.done = False
        self.connected = False
        self.agent = AgentBridge()
        self.recording = None  # the upstream's record channel while it wants our microphone

    # --- the source's frames ---------------------------------------------------------
    def on_stdin(self, fd, condition) -> bool:
        """Never raises: a GLib callback that raises is removed, and then the end of stdin
        (the server gone) would go unnoticed."""
        try:
            return self.read_stdin()
        except Exception as exc:
            self.finish(proto.StateChanged(proto.State.FAILED, f"helper error: {exc!r}"))
            return False

    def read_stdin(self) -> bool:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if not data:
            self.finish(None)  # the source went away
            return False
        try:
            msgs = self.decoder.receive_data(data)
        except proto.ProtocolError as exc:
            self.finish(proto.StateChanged(proto.State.FAILED, f"bad frame from the server: {exc}"))
            return False
        for msg in msgs:
            self.command(msg)
        return True

    def command(self, msg) -> None:
        if isinstance(msg, proto.Connect):
            self.connect(msg)
            return
        if isinstance(msg, proto.RecordData):
            self.record_data(msg.pcm)
            return
        if self.agent.command(msg):
            return
        if not self.inputs_ready:
            # spice-gtk drops input on an inputs channel not open yet (just after a
            # (re)connect): held until it opens, the oldest dropped past MAX_EARLY_INPUT
            self.early_input.append(msg)
            del self.early_input[:-MAX_EARLY_INPUT]
            return
        self.send_input(msg)

    def send_input(self, msg) -> None:
        inputs = self.inputs
        if isinstance(msg, proto.Key):
            (inputs.key_press if msg.pressed else inputs.key_release)(msg.scancode)
        elif isinstance(msg, proto.Position):
            inputs.position(msg.x, msg.y, 0, msg.buttons)
        elif isinstance(msg, proto.Motion):
            inputs.motion(msg.dx, msg.dy, msg.buttons)
        elif isinstance(msg, proto.Button):
            (inputs.button_press if msg.pressed else inputs.button_release)(msg.button, msg.buttons)
        elif isinstance(msg, proto.SetLocks):
            inputs.set_key_locks(msg.modifiers)

    def connect(self, c) -> None:
        if self.session is not None:
            return
        s = Spice.Session()
        s.props.host = c.host
        if c.port:
            s.props.port = str(c.port)
        if c.tls_port:
            s.props.tls_port = str(c.tls_port)
        if c.password:
            s.props.password = c.password
        if c.ca_file:
            s.props.ca_file = c.ca_file
        s.props.enable_audio = True  # playback and record channels (no audio backend: see on_audio_channel_new)
        s.props.enable_usbredir = False
        s.props.enable_smartcard = False
        self.upstream = f"{c.host}:{c.port or c.tls_port}"
        self.max_pixels, self.max_side = c.max_pixels, c.max_side
        signal(s, "channel-new", self.on_channel_new)
        signal(s, "channel-new", self.on_audio_channel_new)
        signal(s, "disconnected", lambda _s: self.finish(proto.StateChanged(proto.State.LOST, "disconnected")))
        self.session = s
        write_frame(proto.StateChanged(proto.State.CONNECTING, self.upstream))
        GLib.timeout_add_seconds(CONNECT_TIMEOUT_S, self.on_timeout)
        if not s.connect():
            self.finish(proto.StateChanged(proto.State.LOST, "spice-gtk could not start connecting"))

    def on_timeout(self) -> bool:
        if not self.connected:
            self.finish(proto.StateChanged(proto.State.LOST, f"no answer from {self.upstream} in {CONNECT_TIMEOUT_S} s"))
        return False

    # --- spice-gtk ---------------------------------------------------------------------
    def on_channel_new(self, session, ch) -> None:
        signal(ch, "channel-event", self.on_channel_event)
        if isinstance(ch, Spice.MainChannel):
            self.main = ch
            signal(ch, "notify::mouse-mode", self.on_mouse_mode)
            self.agent.watch(ch)
        elif isinstance(ch, Spice.DisplayChannel):
            if ch.props.channel_id != 0:
                return  # one monitor
            signal(ch, "display-primary-create", self.on_primary_create)
            signal(ch, "display-primary-destroy", self.on_primary_destroy)
            signal(ch, "display-invalidate", self.on_invalidate)
            signal(ch, "display-mark", lambda _ch, _mark: self.flush())
        elif isinstance(ch, Spice.InputsChannel):
            self.inputs = ch
            signal(ch, "inputs-modifiers", self.on_modifiers)
        elif isinstance(ch, Spice.CursorChannel):
            signal(ch, "cursor-set", self.on_cursor_set)
            signal(ch, "cursor-move", lambda _ch, x, y: write_frame(proto.CursorMove(x, y)))
            signal(ch, "cursor-hide", lambda _ch: write_frame(proto.CursorHide()))
        else:
            return  # ports, webdav...: not ours (playback and record: on_audio_channel_new)
        ch.connect()

    def on_channel_event(self, ch, event) -> None:
        E = Spice.ChannelEvent
        is_main = isinstance(ch, Spice.MainChannel)
        if event == E.OPENED:
            if ch is self.inputs and not self.inputs_ready:
                self.inputs_ready = True
                early, self.early_input = self.early_input, []
                for msg in early:
                    self.send_input(msg)
            if is_main and not self.connected:
                self.connected = True
                write_frame(proto.StateChanged(proto.State.CONNECTED, self.upstream))
            return
        if not (is_main or isinstance(ch, Spice.DisplayChannel)):
            return  # the main channel reports the same loss
        err = ch.get_error()
        detail = err.message if err is not None else ""
        if event == E.ERROR_AUTH:
            self.finish(proto.StateChanged(proto.State.REFUSED, detail or "the password was refused"))
        elif event == E.CLOSED:
            self.finish(proto.StateChanged(proto.State.LOST, "the connection was closed"))
        else:
            name = getattr(event, "value_nick", str(event))
            self.finish(proto.StateChanged(proto.State.LOST, f"{name}: {detail}" if detail else name))

    def on_mouse_mode(self, main, pspec) -> None:
        mode = int(main.props.mouse_mode)
        if mode in (1, 2):
            write_frame(proto.MouseMode(mode))

    def on_modifiers(self, inputs) -> None:
        write_frame(proto.Locks(int(inputs.props.key_modifiers) & 7))

    def on_cursor_set(self, ch, width, height, hot_x, hot_y, rgba) -> None:
        if not rgba or not width or not height or width > proto.MAX_CURSOR_SIDE or height > proto.MAX_CURSOR_SIDE:
            write_frame(proto.CursorSet(0, 0, 0, 0, b""))  # the default cursor
            return
        data = ctypes.string_at(rgba, width * height * 4)
        hx, hy = min(max(hot_x, 0), width - 1), min(max(hot_y, 0), height - 1)
        write_frame(proto.CursorSet(width, height, hx, hy, data))

    def on_primary_create(self, ch, fmt, width, height, stride, shmid, imgdata) -> None:
        if fmt not in FORMATS_32BIT:
            self.finish(proto.StateChanged(proto.State.FAILED, f"unsupported primary surface format {fmt}"))
            return
        if width * height > self.max_pixels or width > self.max_side or height > self.max_side:
            # a hostile or misconfigured VM: copy nothing, grow nothing, say so
            self.primary = None
            self.pending = []
            write_frame(proto.Oversized(width, height))
            return
        need = width * height * 4
        if os.fstat(SHM_FD).st_size < need:
            os.ftruncate(SHM_FD, need)
        if self.shm is None or len(self.shm) < need:
            self.shm_addr = 0
            self.shm = mmap.mmap(SHM_FD, need)
            self.shm_addr = ctypes.addressof(ctypes.c_char.from_buffer(self.shm))
        self.primary = (width, height, stride, imgdata)
        self.pending = [(0, 0, width, height)]
        self.flush(announce=(width, height))

    def on_primary_destroy(self, ch) -> None:
        self.primary = None
        self.pending = []

    def on_invalidate(self, ch, x, y, w, h) -> None:
        if self.primary is None or w <= 0 or h <= 0:
            return
        self.pending.append((x, y, w, h))
        if len(self.pending) > MAX_PENDING:
            xs = [r[0] for r in self.pending]
            ys = [r[1] for r in self.pending]
            x1 = max(r[0] + r[2] for r in self.pending)
            y1 = max(r[1] + r[3] for r in self.pending)
            self.pending = [(min(xs), min(ys), x1 - min(xs), y1 - min(ys))]
        if not self.flush_armed:
            self.flush_armed = True
            os.eventfd_write(self.wake, 1)

    def on_wake(self, fd, condition) -> bool:
        """Nothing else is ready (idle priority): flush what gathered since the wake-up."""
        try:
            os.eventfd_read(self.wake)
        except BlockingIOError:
            pass
        if self.flush_armed:
            self.flush()
        return True

    def flush(self, announce=None) -> bool:
        """Copy what changed into shared memory, then say where (the order matters: the
        source reads the pixels once it has the frame)."""
        self.flush_armed = False
        if self.primary is None:
            return False
        width, height, stride, src = self.primary
        rects = []
        for x, y, w, h in self.pending:
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + w, width), min(y + h, height)
            if x1 <= x0 or y1 <= y0:
                continue
            if x0 == 0 and x1 == width and stride == width * 4:
                ctypes.memmove(self.shm_addr + y0 * stride, src + y0 * stride, (y1 - y0) * stride)
            else:
                n = (x1 - x0) * 4
                for row in range(y0, y1):
                    ctypes.memmove(self.shm_addr + (row * width + x0) * 4, src + row * stride + x0 * 4, n)
            rects.append((x0, y0, x1 - x0, y1 - y0))
        self.pending = []
        if announce is not None:
            write_frame(proto.Surface(*announce))
        for i in range(0, len(rects), 1024):
            write_frame(proto.Damage(tuple(rects[i : i + 1024])))
        return False

    # --- sound ---------------------------------------------------------------------------
    # The channels' signals fire without an audio backend (we never call spice_audio_get):
    # the upstream's PCM goes to the source, which plays it to every client of ours, and the
    # source's (the primary client's) microphone goes upstream while the upstream records.
    def on_audio_channel_new(self, session, ch) -> None:
        if isinstance(ch, Spice.PlaybackChannel):
            signal(ch, "playback-start", lambda _ch, fmt, channels, rate: write_frame(proto.PlaybackStart(channels, rate)))
            signal(ch, "playback-data", self.on_playback_data)
            signal(ch, "playback-stop", lambda _ch: write_frame(proto.PlaybackStop()))
            signal(ch, "notify::volume", self.on_playback_volume)
            signal(ch, "notify::mute", lambda _ch, _p: write_frame(proto.PlaybackMute(bool(_ch.props.mute))))
        elif isinstance(ch, Spice.RecordChannel):
            signal(ch, "record-start", self.on_record_start)
            signal(ch, "record-stop", self.on_record_stop)
        else:
            return
        ch.connect()

    def on_playback_data(self, ch, data, size) -> None:
        pcm = ctypes.string_at(data, size) if isinstance(data, int) else bytes(data)[:size]
        pcm = pcm[: len(pcm) & ~1]
        for i in range(0, len(pcm), proto.MAX_PCM):
            write_frame(proto.PlaybackData(pcm[i : i + proto.MAX_PCM]))

    def on_playback_volume(self, ch, pspec) -> None:
        """ "volume" is a pointer to "nchannels" guint16 levels."""
        n = min(int(ch.props.nchannels), proto.MAX_LEVELS)
        address = ch.get_property("volume")
        if not n or not address:
            return
        levels = (ctypes.c_uint16 * n).from_address(address)
        write_frame(proto.PlaybackVolume(tuple(int(v) for v in levels)))

    def on_record_start(self, ch, fmt, channels, rate) -> None:
        if channels not in (1, 2) or not 8000 <= rate <= 192000:
            return  # not a format the source converts to: the upstream hears nothing
        self.recording = ch
        write_frame(proto.RecordStart(channels, rate))

    def on_record_stop(self, ch) -> None:
        self.recording = None
        write_frame(proto.RecordStop())

    def record_data(self, pcm) -> None:
        ch = self.recording
        if ch is None or not pcm:
            return
        buf = ctypes.create_string_buffer(pcm, len(pcm))
        ch.send_data(ctypes.addressof(buf), len(pcm), int(GLib.get_monotonic_time() // 1000) & 0xFFFFFFFF)

    def finish(self, state) -> None:
        """Report how this connection ended (once) and leave."""
        if self.done:
            return
        self.done = True
        if state is not None:
            try:
                write_frame(state)
            except OSError:
                pass
        self.loop.quit()


# --- the agent: clipboard and display size, passed through to the VM's own agent ------
# spice-gtk speaks VDAgent to the upstream; this block turns its main channel's clipboard
# signals into eager VmClipboard frames (every type we take is requested at once on a grab)
# and SetClipboard / SetDisplaySize frames into clipboard_selection_grab/notify and
# update_display + send_monitor_config. VDAgent's clipboard type numbers are the frames'
# (1 UTF-8 text, 2 PNG), its selection numbers too (0 CLIPBOARD, 1 PRIMARY).
VD_CAP_MONITORS_CONFIG, VD_CAP_CLIPBOARD_BY_DEMAND, VD_CAP_CLIPBOARD_SELECTION = 1, 5, 6
AGENT_FETCH_TIMEOUT_S = 5  # the VM's agent takes this long at most to hand over a selection


class AgentBridge:
    def __init__(self) -> None:
        self.main = None
        self.flags = 0
        self.ours = {}  # selection number -> contents we grabbed it with (for the VM's requests)
        self.fetches = {}  # selection number -> [types still wanted, contents so far, timer id]

    def watch(self, main) -> None:
        self.main = main
        signal(main, "notify::agent-connected", lambda _m, _p: self.report_state())
        signal(main, "main-agent-update", lambda _m: self.report_state())
        signal(main, "main-clipboard-selection-grab", self.on_grab)
        signal(main, "main-clipboard-selection", self.on_data)
        signal(main, "main-clipboard-selection-release", self.on_release)
        signal(main, "main-clipboard-selection-request", self.on_request)

    def report_state(self) -> None:
        main = self.main
        flags = 0
        if main.props.agent_connected:
            flags = proto.AgentFlags.CONNECTED
            if main.agent_test_capability(VD_CAP_CLIPBOARD_BY_DEMAND):
                flags |= proto.AgentFlags.CLIPBOARD
            if main.agent_test_capability(VD_CAP_CLIPBOARD_SELECTION):
                flags |= proto.AgentFlags.PRIMARY
            if main.agent_test_capability(VD_CAP_MONITORS_CONFIG):
                flags |= proto.AgentFlags.MONITORS
        if flags != self.flags:
            self.flags = flags
            if not flags:
                self.ours.clear()
                for sel in list(self.fetches):
                    self.drop_fetch(sel)
            write_frame(proto.AgentState(flags))

    def command(self, msg) -> bool:
        """A frame for the agent (True), else False."""
        if isinstance(msg, proto.SetClipboard):
            self.set_clipboard(msg)
        elif isinstance(msg, proto.SetDisplaySize):
            if self.main is not None and self.flags & proto.AgentFlags.MONITORS:
                self.main.update_display_enabled(0, True, False)
                self.main.update_display(0, 0, 0, msg.width, msg.height, False)
                self.main.send_monitor_config()
        else:
            return False
        return True

    def set_clipboard(self, msg) -> None:
        if self.main is None or not self.flags & proto.AgentFlags.CLIPBOARD:
            return
        sel = proto.CLIP_SELECTIONS.index(msg.selection)
        if sel and not self.flags & proto.AgentFlags.PRIMARY:
            return
        self.drop_fetch(sel)
        if msg.contents:
            self.ours[sel] = msg.contents
            kinds = [k for k, mime in proto.CLIP_KINDS.items() if mime in msg.contents]
            self.main.clipboard_selection_grab(sel, kinds)
        elif self.ours.pop(sel, None) is not None:
            self.main.clipboard_selection_release(sel)

    def on_request(self, main, sel, kind) -> bool:
        """The VM pastes what we grabbed for."""
        mime = proto.CLIP_KINDS.get(kind)
        contents = self.ours.get(sel, {})
        if mime not in contents:
            return False
        main.clipboard_selection_notify(sel, kind, contents[mime])
        return True

    def on_grab(self, main, sel, types, ntypes) -> bool:
        """The VM copied: ask for every type we take, report once all are in."""
        if sel >= len(proto.CLIP_SELECTIONS):
            return False
        self.ours.pop(sel, None)
        self.drop_fetch(sel)
        offered = _uint32s(types, ntypes)
        want = [k for k in proto.CLIP_KINDS if k in offered]
        if not want:
            write_frame(proto.VmClipboard(proto.CLIP_SELECTIONS[sel], {}))
            return True
        timer = GLib.timeout_add_seconds(AGENT_FETCH_TIMEOUT_S, self.on_fetch_timeout, sel)
        self.fetches[sel] = [want, {}, timer]
        main.clipboard_selection_request(sel, want[0])
        return True

    def on_data(self, main, sel, kind, data, size) -> None:
        fetch = self.fetches.get(sel)
        if fetch is None or not fetch[0] or fetch[0][0] != kind:
            return
        want, got, _timer = fetch
        want.pop(0)
        if data and size and sum(map(len, got.values())) + size <= proto.MAX_CLIPBOARD:
            got[proto.CLIP_KINDS[kind]] = _bytes(data, size)
        if want:
            main.clipboard_selection_request(sel, want[0])
        else:
            self.finish_fetch(sel)

    def on_fetch_timeout(self, sel) -> bool:
        fetch = self.fetches.get(sel)
        if fetch is not None:
            fetch[2] = 0
            self.finish_fetch(sel)
        return False

    def finish_fetch(self, sel) -> None:
        _want, got, _timer = self.fetches.get(sel)
        self.drop_fetch(sel)
        write_frame(proto.VmClipboard(proto.CLIP_SELECTIONS[sel], got))

    def drop_fetch(self, sel) -> None:
        fetch = self.fetches.pop(sel, None)
        if fetch is not None and fetch[2]:
            GLib.source_remove(fetch[2])

    def on_release(self, main, sel) -> None:
        if sel < len(proto.CLIP_SELECTIONS):
            self.drop_fetch(sel)
            write_frame(proto.VmClipboard(proto.CLIP_SELECTIONS[sel], {}))


def _uint32s(types, n) -> list:
    """A signal's (gpointer, count) of guint32: a list through spice-gtk's annotations, an
    address without them."""
    if not types or not n:
        return []
    if isinstance(types, int):
        return list((ctypes.c_uint32 * n).from_address(types))
    return [int(t) for t in list(types)[:n]]


def _bytes(data, size) -> bytes:
    if isinstance(data, int):
        return ctypes.string_at(data, size)
    return bytes(data)[:size]


def main() -> int:
    loop = GLib.MainLoop()
    helper = Helper(loop)
    GLib.io_add_watch(0, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, helper.on_stdin)
    try:
        loop.run()
    except BrokenPipeError:
        return 0
    if helper.session is not None:
        helper.session.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
