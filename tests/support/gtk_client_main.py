#!/usr/bin/python3
"""A real spice-gtk client (SpiceClientGLib through GObject introspection), driven over stdin.

Run by /usr/bin/python3 (Debian's python3-gi), never by the test venv. It prints
one JSON object per line on stdout (events and command replies) and reads
commands from stdin, one per line:
  dump PATH   write the decoded primary surface (raw bytes, B G R X) to PATH
  stats       report counters
  quit        disconnect and exit
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
    return {1: "main", 2: "display", 3: "inputs", 4: "cursor"}.get(ch.props.channel_type, str(ch.props.channel_type))


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


def on_channel_new(session, ch):
    state["channels"][channel_name(ch)] = ch
    signal(ch, "channel-event", on_channel_event)
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
        emit(reply="stats", marks=state["marks"], invalidates=state["invalidates"], quiet_for=quiet)
    elif parts[0] == "quit":
        session.disconnect()
        emit(reply="quit")
        loop.quit()
    else:
        emit(reply=parts[0], ok=False, error="unknown command")


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
args = ap.parse_args()

session = Spice.Session()
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
session.props.enable_audio = False
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
