"""Opening an X display with xcffib and checking it can be served.

The checks name what is missing (an extension, a depth, a visual) in a sentence
meant for the user; `--source x11:...` turns it into a usage error at start, and a
display that comes back unsuitable after a loss is logged with the same sentence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import xcffib
import xcffib.damage
import xcffib.randr
import xcffib.shm
import xcffib.xfixes
import xcffib.xkb
import xcffib.xproto
import xcffib.xtest

REQUIRED = ("DAMAGE", "XFIXES", "XTEST", "XKEYBOARD")
OPTIONAL = ("MIT-SHM", "RANDR")
TRUECOLOR = 4  # xproto.VisualClass.TrueColor
XFIXES_VERSION = (5, 0)  # cursor images with names (2+), regions (2+)
DAMAGE_VERSION = (1, 1)
LSB_FIRST = 0


class XUnavailable(Exception):
    """The display cannot be reached (not running, no permission, connection lost)."""


class XUnsuitable(Exception):
    """The display is there but cannot be served as it is (the message says why)."""


# X's own display names: [PROTOCOL/][HOST]:[:]NUMBER[.SCREEN] (HOST may be an IPv6 address).
_DISPLAY = re.compile(r"^(?:(?P<proto>[A-Za-z0-9_-]+)/)?(?P<host>.*?)(?P<colons>::?)(?P<number>\d+)(?:\.(?P<screen>\d+))?$")
_BARE_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def display_name(spec: str | None) -> str:
    """The X display of `--source x11[:DISPLAY]`: the given name, or $DISPLAY.

    `x11:71` means display 71 (`:71`), as `x11::71` does, since a bare number is no
    name X itself accepts; `x11:HOST:0` and `x11:unix:0` are X's own forms."""
    if spec:
        if _BARE_NUMBER.match(spec):
            return ":" + spec
        if not _DISPLAY.match(spec):
            raise XUnsuitable(
                f"--source x11:{spec}: {spec!r} is not an X display name; write x11:N or x11::N for display N on this "
                "machine, x11:HOST:N for one on another (as in $DISPLAY)"
            )
        return spec
    env = os.environ.get("DISPLAY", "")
    if not env:
        raise XUnsuitable("--source x11: $DISPLAY is not set; name the display, e.g. --source x11:0")
    return env


def display_where(name: str) -> str:
    """Where X's client library looks for a display name, in words (for error messages)."""
    m = _DISPLAY.match(name)
    if m is None:
        return f"{name!r}, which is no X display name"
    number = int(m["number"])
    host, proto = m["host"], (m["proto"] or "").lower()
    if m["colons"] == "::":
        return f"display {number} over DECnet on {host or 'this machine'}"
    if host in ("", "unix") and proto in ("", "unix"):
        how = "its socket /tmp/.X11-unix/X{n}" + ("" if host == "unix" or proto == "unix" else ", then TCP port {p} on localhost")
        return f"display {number} on this machine ({how.format(n=number, p=6000 + number)})"
    return f"display {number} on {host} (TCP port {6000 + number})"


@dataclass
class XDisplay:
    """One open connection to a checked display, with its extensions brought up."""

    name: str
    conn: Any
    root: int
    width: int
    height: int
    depth: int
    lsb_first: bool
    extensions: dict[str, bool] = field(default_factory=dict)

    @property
    def fd(self) -> int:
        return int(self.conn.get_file_descriptor())

    def has(self, ext: str) -> bool:
        return self.extensions.get(ext, False)

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:  # a dead connection: nothing to tell it
            pass


def connect(name: str) -> XDisplay:
    """Connect to `name`, check depth, visual and extensions; XUnavailable or XUnsuitable."""
    try:
        conn = xcffib.connect(display=name)
    except xcffib.ConnectionException as exc:
        raise XUnavailable(
            f"cannot connect to X display {name!r}: tried {display_where(name)}: {exc} "
            "Is it running, and may this user open it (XAUTHORITY)?"
        ) from None
    except xcffib.XcffibException as exc:
        raise XUnavailable(f"cannot connect to X display {name!r}: {exc}") from None
    try:
        return _checked(name, conn)
    except BaseException:
        try:
            conn.disconnect()
        except Exception:
            pass
        raise


def _checked(name: str, conn: Any) -> XDisplay:
    try:
        setup = conn.get_setup()
        screen = setup.roots[conn.pref_screen]
        problems = []
        depth = screen.root_depth
        visual = _root_visual(screen)
        if depth not in (24, 32):
            problems.append(f"the root window is {depth} bits deep (24 or 32-bit TrueColor is needed)")
        elif visual is None or visual._class != TRUECOLOR:
            problems.append("the root window's visual is not TrueColor")
        elif (visual.red_mask, visual.green_mask, visual.blue_mask) != (0xFF0000, 0xFF00, 0xFF):
            problems.append(
                f"the root visual's colour masks are {visual.red_mask:#x}/{visual.green_mask:#x}/{visual.blue_mask:#x} "
                "(8-bit R, G, B at 0xff0000/0xff00/0xff are needed)"
            )
        bpp = {f.depth: f.bits_per_pixel for f in setup.pixmap_formats}.get(depth)
        if not problems and bpp != 32:
            problems.append(f"depth {depth} is stored with {bpp} bits per pixel (32 are needed)")
        cookies = {ext: conn.core.QueryExtension(len(ext), ext) for ext in REQUIRED + OPTIONAL}
        present = {ext: bool(c.reply().present) for ext, c in cookies.items()}
        missing = [ext for ext in REQUIRED if not present[ext]]
        if missing:
            problems.append("the X server lacks the extension" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
        if problems:
            raise XUnsuitable(f"X display {name!r} cannot be served: " + "; ".join(problems))
        x = XDisplay(
            name,
            conn,
            screen.root,
            screen.width_in_pixels,
            screen.height_in_pixels,
            depth,
            setup.image_byte_order == LSB_FIRST,
            present,
        )
        conn(xcffib.xfixes.key).QueryVersion(*XFIXES_VERSION).reply()
        conn(xcffib.damage.key).QueryVersion(*DAMAGE_VERSION).reply()
        conn(xcffib.xtest.key).GetVersion(2, 2).reply()
        if not conn(xcffib.xkb.key).UseExtension(1, 0).reply().supported:
            raise XUnsuitable(f"X display {name!r} cannot be served: its XKEYBOARD extension refused version 1.0")
        if present["RANDR"]:
            conn(xcffib.randr.key).QueryVersion(1, 5).reply()
        return x
    except xcffib.ConnectionException as exc:
        raise XUnavailable(f"X display {name!r} went away while being checked ({exc})") from None


def _root_visual(screen: Any) -> Any:
    for d in screen.allowed_depths:
        for v in d.visuals:
            if v.visual_id == screen.root_visual:
                return v
    return None


def lost(exc: BaseException) -> bool:
    """Whether an exception from xcffib means the connection is gone (not a protocol error)."""
    return isinstance(exc, XUnavailable | xcffib.ConnectionException) or (
        isinstance(exc, xcffib.XcffibException) and not isinstance(exc, xcffib.Error) and "onnection" in str(exc)
    )
