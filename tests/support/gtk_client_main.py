#!/usr/bin/python3
"""A real spice-gtk client (SpiceClientGLib through GObject introspection), driven over stdin.

Run by /usr/bin/python3 (Debian's python3-gi), never by the test venv. It prints
one JSON object per line on stdout (events and command replies) and reads
commands from stdin, one per line:
  dump PATH                 write the decoded primary surface (raw bytes, B G R X) to PATH
  stats                     report counters
  position X Y MASK         absolute pointer (client mouse mode), buttons held in MASK
  motion DX DY MASK         relative pointer (server mouse mode)
  press B MASK / release B MASK   mouse button B (1 left .. 5 wheel down)
  drag X0 Y0 X1 Y1 STEPS    left-drag along a line in STEPS positions, as fast as spice-gtk sends
  key SC / keydown SC / keyup SC   PC XT scancode (0x100 added for E0 keys)
  locks N                   report keyboard lock LEDs (1 scroll, 2 num, 4 caps)
  mouse_mode M              ask for mouse mode M (1 server, 2 client)
  compression N             DISPLAY_PREFERRED_COMPRESSION N on the display channel
                            (SpiceImageCompression: 1 off, 7 LZ4; the server must have
                            DISPLAY_CAP_PREF_COMPRESSION, else spice-gtk sends nothing)
  quit                      disconnect and exit
Agent (the server's built-in agent, SpiceMainChannel; see the agent block below):
  agent                     report agent-connected and the agent's caps (agent-caps-0)
  clip_copy SEL TEXT...     hold TEXT (UTF-8, the rest of the line) and grab selection SEL
                            (0 CLIPBOARD, 1 PRIMARY) for UTF8_TEXT; the agent's request for
                            it is answered with clipboard_selection_notify
  clip_request SEL TYPE     ask the agent for SEL's contents of TYPE (1 UTF8_TEXT): a
                            clip-data event follows (main-clipboard-selection)
  clip_release SEL          release selection SEL
  monitor W H               update_display(0, 0, 0, W, H) + send_monitor_config
  send_file PATH            file_copy_async; a file-done event says how it ended
Events: clip-grab (sel, types), clip-data (sel, type, size, text), clip-release (sel),
clip-request (sel, type, answered), agent (connected), file-done (ok, error: the whole
operation), file-task (name, error: one file, the agent's status in spice-gtk's words).
Audio (with --audio; see the audio block below):
  audio                     report playback: starts, stops, frames, bytes, sha256 of all PCM
  audio_dump PATH           write every PCM byte received so far to PATH
  record_send PATH MS       send PATH's raw PCM through the record channel, MS ms a message
"""

import argparse
import ctypes
import json
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

# Session.connect and Channel.connect are SPICE calls; signals go through GObject.
signal = GObject.Object.connect

state = {"primary": None, "marks": 0, "invalidates": 0, "last_invalidate": 0.0, "channels": {}}


def emit(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def channel_name(ch):
    return {1: "main", 2: "display", 3: "inputs", 4: "cursor", 5: "playback", 6: "record"}.get(
        ch.props.channel_type, str(ch.props.channel_type)
    )


def on_channel_event(ch, event):
    name = event.value_nick if hasattr(event, "value_nick") else str(event)
    err = ch.get_error()
    emit(event="channel", channel=channel_name(ch), what=name, error=err.message if err else None)


def on_primary_create(ch, fmt, width, height, stride, shmid, imgdata):
    state["primary"] = (fmt, width, height, stride, imgdata)
    emit(event="primary-create", format=fmt, width=width, height=height, stride=stride)


def on_primary_destroy(ch):
    state["primary"] = None
    emit(event="primary-destroy")


def on_invalidate(ch, x, y, w, h):
    state["invalidates"] += 1
    state["last_invalidate"] = time.monotonic()


def on_mark(ch, mark):
    state["marks"] += 1
    emit(event="mark", mark=mark)


def on_mouse_mode(main, pspec):
    emit(event="mouse-mode", mode=main.props.mouse_mode)


def on_modifiers(inputs):
    emit(event="modifiers", value=inputs.props.key_modifiers)


def on_cursor_set(ch, width, height, hot_x, hot_y, rgba):
    emit(event="cursor-set", width=width, height=height, hot_x=hot_x, hot_y=hot_y, has_data=bool(rgba))


def on_cursor_move(ch, x, y):
    state["cursor_moves"] = state.get("cursor_moves", 0) + 1
    state["cursor_pos"] = (x, y)


def on_cursor_hide(ch):
    emit(event="cursor-hide")


def on_channel_new(session, ch):
    state["channels"][channel_name(ch)] = ch
    signal(ch, "channel-event", on_channel_event)
    if isinstance(ch, Spice.MainChannel):
        signal(ch, "notify::mouse-mode", on_mouse_mode)
        agent_channel_new(ch)
    if isinstance(ch, Spice.InputsChannel):
        signal(ch, "inputs-modifiers", on_modifiers)
    if isinstance(ch, Spice.CursorChannel):
        signal(ch, "cursor-set", on_cursor_set)
        signal(ch, "cursor-move", on_cursor_move)
        signal(ch, "cursor-hide", on_cursor_hide)
    audio_channel_new(ch)
    if isinstance(ch, Spice.DisplayChannel):
        signal(ch, "display-primary-create", on_primary_create)
        signal(ch, "display-primary-destroy", on_primary_destroy)
        signal(ch, "display-invalidate", on_invalidate)
        signal(ch, "display-mark", on_mark)
    ch.connect()
    emit(event="channel-new", channel=channel_name(ch))


def on_disconnected(session):
    emit(event="disconnected")


def command(line):
    parts = line.split()
    if not parts:
        return
    if parts[0] == "dump":
        prim = state["primary"]
        if prim is None:
            emit(reply="dump", ok=False, error="no primary surface")
            return
        fmt, width, height, stride, ptr = prim
        with open(parts[1], "wb") as f:
            f.write(ctypes.string_at(ptr, stride * height))
        emit(reply="dump", ok=True, path=parts[1], width=width, height=height, stride=stride, format=fmt)
    elif parts[0] == "stats":
        quiet = time.monotonic() - state["last_invalidate"] if state["last_invalidate"] else None
        emit(
            reply="stats",
            marks=state["marks"],
            invalidates=state["invalidates"],
            quiet_for=quiet,
            cursor_moves=state.get("cursor_moves", 0),
            cursor_pos=state.get("cursor_pos"),
            mouse_mode=state["channels"]["main"].props.mouse_mode if "main" in state["channels"] else None,
            modifiers=state["channels"]["inputs"].props.key_modifiers if "inputs" in state["channels"] else None,
        )
    elif parts[0] in ("position", "motion", "press", "release", "key", "keydown", "keyup", "locks"):
        inputs = state["channels"].get("inputs")
        if inputs is None:
            emit(reply=parts[0], ok=False, error="no inputs channel")
            return
        n = [int(v, 0) for v in parts[1:]]
        if parts[0] == "position":
            inputs.position(n[0], n[1], 0, n[2])
        elif parts[0] == "motion":
            inputs.motion(n[0], n[1], n[2])
        elif parts[0] == "press":
            inputs.button_press(n[0], n[1])
        elif parts[0] == "release":
            inputs.button_release(n[0], n[1])
        elif parts[0] == "key":
            inputs.key_press_and_release(n[0])
        elif parts[0] == "keydown":
            inputs.key_press(n[0])
        elif parts[0] == "keyup":
            inputs.key_release(n[0])
        elif parts[0] == "locks":
            inputs.set_key_locks(n[0])
        emit(reply=parts[0], ok=True)
    elif parts[0] == "drag":
        drag(*[int(v, 0) for v in parts[1:6]])
    elif parts[0] == "mouse_mode":
        state["channels"]["main"].request_mouse_mode(int(parts[1]))
        emit(reply="mouse_mode", ok=True)
    elif parts[0] == "compression":
        display = state["channels"].get("display")
        if display is None:
            emit(reply="compression", ok=False, error="no display channel")
            return
        change = getattr(display, "display_channel_change_preferred_compression", None)
        if change is None:  # spice-gtk before 0.35 named it without "channel"
            change = display.display_change_preferred_compression
        change(int(parts[1], 0))
        emit(reply="compression", ok=True, compression=int(parts[1], 0))
    elif audio_command(parts):
        pass
    elif agent_command(line, parts):
        pass
    elif parts[0] == "quit":
        session.disconnect()
        emit(reply="quit")
        loop.quit()
    else:
        emit(reply=parts[0], ok=False, error="unknown command")


def drag(x0, y0, x1, y1, steps):
    """Press, `steps` positions (5 every 2 ms, a fast hand on a 2500 Hz mouse, so motion
    ACKs are read in between), then release once the last position had time to go."""
    inputs = state["channels"]["inputs"]
    points = [(x0 + (x1 - x0) * i // (steps - 1), y0 + (y1 - y0) * i // (steps - 1)) for i in range(steps)]
    inputs.position(x0, y0, 0, 0)
    inputs.button_press(1, 1)
    it = iter(points)

    def step():
        for _ in range(5):
            p = next(it, None)
            if p is None:
                GLib.timeout_add(400, finish)
                return False
            inputs.position(p[0], p[1], 0, 1)
        return True

    def finish():
        inputs.button_release(1, 0)
        emit(reply="drag", ok=True, steps=steps)
        return False

    GLib.timeout_add(2, step)


# --- audio (playback and record channels) ---------------------------------------------------
# spice-gtk creates these channels only with the session's enable-audio (--audio). We do not
# ask spice-gtk for an audio backend (spice_audio_get): the channels' signals fire without
# one, and the test reads the PCM from playback-data, the boundary it controls.
audio = {"starts": [], "stops": 0, "frames": 0, "pcm": bytearray(), "record_starts": 0, "record_stops": 0, "sent": 0}


def on_playback_start(ch, fmt, channels, rate):
    audio["starts"].append([fmt, channels, rate])
    emit(event="playback-start", format=fmt, channels=channels, rate=rate)


def on_playback_data(ch, data, size):
    audio["frames"] += 1
    audio["pcm"] += ctypes.string_at(data, size) if isinstance(data, int) else bytes(data)[:size]


def on_playback_stop(ch):
    audio["stops"] += 1
    emit(event="playback-stop")


def on_record_start(ch, fmt, channels, rate):
    audio["record_starts"] += 1
    emit(event="record-start", format=fmt, channels=channels, rate=rate)


def on_record_stop(ch):
    audio["record_stops"] += 1
    emit(event="record-stop")


def audio_channel_new(ch):
    if isinstance(ch, Spice.PlaybackChannel):
        signal(ch, "playback-start", on_playback_start)
        signal(ch, "playback-data", on_playback_data)
        signal(ch, "playback-stop", on_playback_stop)
    if isinstance(ch, Spice.RecordChannel):
        signal(ch, "record-start", on_record_start)
        signal(ch, "record-stop", on_record_stop)


def audio_command(parts):
    """True if `parts` was an audio command (and it was answered)."""
    import hashlib

    if parts[0] == "audio":
        pb = state["channels"].get("playback")
        emit(
            reply="audio",
            starts=audio["starts"],
            stops=audio["stops"],
            frames=audio["frames"],
            bytes=len(audio["pcm"]),
            sha256=hashlib.sha256(audio["pcm"]).hexdigest(),
            record_starts=audio["record_starts"],
            record_stops=audio["record_stops"],
            record_sent=audio["sent"],
            playback_caps=[c for c in range(8) if pb is not None and pb.test_capability(c)],
            mute=pb.props.mute if pb is not None else None,
            nchannels=pb.props.nchannels if pb is not None else None,
        )
    elif parts[0] == "audio_dump":
        with open(parts[1], "wb") as f:
            f.write(audio["pcm"])
        emit(reply="audio_dump", ok=True, bytes=len(audio["pcm"]))
    elif parts[0] == "record_send":
        rec = state["channels"].get("record")
        if rec is None:
            emit(reply="record_send", ok=False, error="no record channel")
            return True
        with open(parts[1], "rb") as f:
            pcm = f.read()
        step = 48 * 4 * int(parts[2])  # 48 kHz stereo 16-bit: ms -> bytes
        chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        it = iter(chunks)

        def send_one():
            chunk = next(it, None)
            if chunk is None:
                emit(reply="record_send", ok=True, chunks=len(chunks), sent=audio["sent"])
                return False
            buf = ctypes.create_string_buffer(chunk, len(chunk))
            rec.send_data(ctypes.addressof(buf), len(chunk), int(time.monotonic() * 1000) & 0xFFFFFFFF)
            audio["sent"] += len(chunk)
            return True

        GLib.timeout_add(int(parts[2]), send_one)
    else:
        return False
    return True


# --- agent (clipboard, monitors config, file transfer) -------------------------------------
clip = {"held": {}}  # selection -> the bytes this client offers


def on_new_file_transfer(main, task):
    def finished(task, error):
        emit(event="file-task", name=task.props.file.get_basename(), error=error.message if error else None)

    signal(task, "finished", finished)


def on_agent_connected(main, pspec):
    emit(event="agent", connected=main.props.agent_connected)


def on_clip_grab(main, selection, types, ntypes):
    got = _array(types, ntypes, ctypes.c_uint32)
    emit(event="clip-grab", sel=selection, types=got)
    return True


def _array(value, n, item=ctypes.c_uint8):
    """A signal's array argument: PyGObject gives a list (or bytes) where spice-gtk annotates
    its length, else an address."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    return list((item * n).from_address(value)) if n else []


def on_clip_data(main, selection, clip_type, data, size):
    raw = bytes(_array(data, size))[:size]
    import hashlib

    text = raw.decode("utf-8", "replace")
    emit(event="clip-data", sel=selection, type=clip_type, size=size, text=text, sha256=hashlib.sha256(raw).hexdigest())


def on_clip_request(main, selection, clip_type):
    data = clip["held"].get(selection)
    emit(event="clip-request", sel=selection, type=clip_type, answered=data is not None)
    if data is None:
        return False
    main.clipboard_selection_notify(selection, clip_type, list(data))
    return True


def on_clip_release(main, selection):
    emit(event="clip-release", sel=selection)


def agent_channel_new(main):
    signal(main, "notify::agent-connected", on_agent_connected)
    signal(main, "main-clipboard-selection-grab", on_clip_grab)
    signal(main, "main-clipboard-selection", on_clip_data)
    signal(main, "main-clipboard-selection-request", on_clip_request)
    signal(main, "main-clipboard-selection-release", on_clip_release)
    signal(main, "new-file-transfer", on_new_file_transfer)


def agent_command(line, parts):
    """True if `parts` was an agent command (and it was answered)."""
    main = state["channels"].get("main")
    if parts[0] == "agent":
        emit(
            reply="agent",
            connected=main.props.agent_connected if main else None,
            caps0=main.props.agent_caps_0 if main else None,
        )
    elif parts[0] == "clip_copy":
        sel = int(parts[1])
        text = line.split(None, 2)[2] if len(parts) > 2 else ""
        clip["held"][sel] = text.encode()
        main.clipboard_selection_grab(sel, [1])
        emit(reply="clip_copy", ok=True, size=len(clip["held"][sel]))
    elif parts[0] == "clip_request":
        main.clipboard_selection_request(int(parts[1]), int(parts[2]))
        emit(reply="clip_request", ok=True)
    elif parts[0] == "clip_release":
        clip["held"].pop(int(parts[1]), None)
        main.clipboard_selection_release(int(parts[1]))
        emit(reply="clip_release", ok=True)
    elif parts[0] == "monitor":
        w, h = int(parts[1]), int(parts[2])
        main.update_display_enabled(0, True, False)
        main.update_display(0, 0, 0, w, h, False)
        emit(reply="monitor", ok=bool(main.send_monitor_config()))
    elif parts[0] == "send_file":
        from gi.repository import Gio

        def done(ch, result, user_data, path=parts[1]):
            try:
                ok, error = ch.file_copy_finish(result), None
            except GLib.Error as exc:
                ok, error = False, exc.message
            emit(event="file-done", path=path, ok=bool(ok), error=error)

        main.file_copy_async([Gio.File.new_for_path(parts[1])], Gio.FileCopyFlags.NONE, None, None, None, done, None)
        emit(reply="send_file", ok=True)
    else:
        return False
    return True


def on_stdin(source, condition):
    line = sys.stdin.readline()
    if not line:  # the test went away: leave too
        loop.quit()
        return False
    command(line.strip())
    return True


ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--tls-port", type=int, default=0)
ap.add_argument("--ca-file")
ap.add_argument("--password")
ap.add_argument("--tls-only", action="store_true", help="secure-channels=all")
ap.add_argument("--cache-size", type=int, help="the session's pixmap cache in bytes (DISPLAY_INIT says it /4 in pixels)")
ap.add_argument("--uri", help="a spice:// URI, as remote-viewer takes it (host and ports from it)")
ap.add_argument("--audio", action="store_true", help="enable-audio: open the playback and record channels")
ap.add_argument("--no-opus", action="store_true", help="do not offer PLAYBACK_CAP_OPUS (spice-gtk's SPICE_DISABLE_OPUS)")
args = ap.parse_args()
if args.no_opus:
    import os

    os.environ["SPICE_DISABLE_OPUS"] = "1"

session = Spice.Session()
if args.uri:
    session.props.uri = args.uri
else:
    session.props.host = args.host
if args.port:
    session.props.port = str(args.port)
if args.tls_port:
    session.props.tls_port = str(args.tls_port)
if args.ca_file:
    session.props.ca_file = args.ca_file
if args.password is not None:
    session.props.password = args.password
if args.tls_only:
    session.props.secure_channels = ["all"]
if args.cache_size is not None:
    session.props.cache_size = args.cache_size
session.props.enable_audio = args.audio
session.props.enable_usbredir = False
session.props.enable_smartcard = False
signal(session, "channel-new", on_channel_new)
signal(session, "disconnected", on_disconnected)

loop = GLib.MainLoop()
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
emit(event="starting", spice_gtk=Spice.__name__)
if not session.connect():
    emit(event="connect-failed")
    sys.exit(1)
loop.run()
