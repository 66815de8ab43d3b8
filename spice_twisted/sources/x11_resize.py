"""Setting an X screen's size through RandR, as a desktop agent does for a viewer's window.

The output that shows the desktop (the primary one, else the first connected one with a
CRTC) is set to a mode of the asked size; when the server has no such mode, one is made
(CreateMode) and added to the output (AddOutputMode), the way spice-vdagent does it. The
screen is grown before the CRTC is set and shrunk after it, since X refuses a CRTC that
does not fit in the screen. Other CRTCs that would not fit are switched off.

These are round trips to the X server alone (no other client is waited on), made on the
connection of the caller's thread; the capture thread learns the new size from X's own
ConfigureNotify / ScreenChangeNotify and serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xcffib
import xcffib.randr

REFRESH = 60  # Hz of a mode we make (a virtual screen has no monitor to please)
MODE_PREFIX = "spice-"  # our modes' names: "spice-1001x667"


class ResizeError(Exception):
    """The X server cannot take this size (the message says why)."""


@dataclass
class Resized:
    width: int
    height: int
    mode_created: bool  # a new mode was made for this size


def mode_timings(width: int, height: int) -> tuple[int, ...]:
    """Plausible timings for a made mode: (dot_clock, hsync_start, hsync_end, htotal,
    vsync_start, vsync_end, vtotal). Virtual outputs ignore them; sizes are what count."""
    hsync_start, hsync_end, htotal = width + 48, width + 80, width + 160
    vsync_start, vsync_end, vtotal = height + 3, height + 8, height + 30
    return (htotal * vtotal * REFRESH, hsync_start, hsync_end, htotal, vsync_start, vsync_end, vtotal)


def _screen_size(conn: Any, root: int) -> tuple[int, int]:
    g = conn.core.GetGeometry(root).reply()
    return g.width, g.height


def _mm(conn: Any, pixels: int, horizontal: bool) -> int:
    """Millimetres for `pixels`, at the screen's current density (96 dpi if it has none)."""
    screen = conn.get_setup().roots[conn.pref_screen]
    px = screen.width_in_pixels if horizontal else screen.height_in_pixels
    mm = screen.width_in_millimeters if horizontal else screen.height_in_millimeters
    if px and mm:
        return max(1, round(pixels * mm / px))
    return max(1, round(pixels * 25.4 / 96))


def _pick_output(randr: Any, root: int, res: Any) -> tuple[int, Any]:
    primary = randr.GetOutputPrimary(root).reply().output
    infos = {o: randr.GetOutputInfo(o, res.config_timestamp) for o in res.outputs}
    infos = {o: c.reply() for o, c in infos.items()}
    connected = xcffib.randr.Connection.Connected
    if primary in infos and infos[primary].crtcs:
        return primary, infos[primary]
    for o, info in infos.items():
        if info.connection == connected and info.crtc:
            return o, info
    for o, info in infos.items():
        if info.connection == connected and info.crtcs:
            return o, info
    raise ResizeError("the X server has no connected RandR output to resize")


def resize_screen(conn: Any, root: int, width: int, height: int) -> Resized:
    """Set the X screen to width x height; ResizeError if the server cannot."""
    randr = conn(xcffib.randr.key)
    rng = randr.GetScreenSizeRange(root).reply()
    if not (rng.min_width <= width <= rng.max_width and rng.min_height <= height <= rng.max_height):
        raise ResizeError(
            f"{width}x{height} is outside the X screen's range {rng.min_width}x{rng.min_height} to {rng.max_width}x{rng.max_height}"
        )
    res = randr.GetScreenResourcesCurrent(root).reply()
    output, info = _pick_output(randr, root, res)
    mode, created = 0, False
    for m in res.modes:
        if m.width == width and m.height == height:
            mode = m.id
            break
    if mode and mode not in info.modes:
        randr.AddOutputModeChecked(output, mode).check()
    if not mode:
        name = f"{MODE_PREFIX}{width}x{height}".encode()
        dot, hs, he, ht, vs, ve, vt = mode_timings(width, height)
        info_struct = xcffib.randr.ModeInfo.synthetic(0, width, height, dot, hs, he, ht, 0, vs, ve, vt, len(name), 0)
        mode = randr.CreateMode(root, info_struct, len(name), name).reply().mode
        randr.AddOutputModeChecked(output, mode).check()
        created = True
    crtc = info.crtc or info.crtcs[0]
    current = randr.GetCrtcInfo(crtc, res.config_timestamp).reply()
    cur_w, cur_h = _screen_size(conn, root)
    # Switch off other CRTCs that would not fit the new screen.
    for other in res.crtcs:
        if other == crtc:
            continue
        ci = randr.GetCrtcInfo(other, res.config_timestamp).reply()
        if ci.mode and (ci.x + ci.width > width or ci.y + ci.height > height):
            randr.SetCrtcConfig(other, res.timestamp, res.config_timestamp, 0, 0, 0, xcffib.randr.Rotation.Rotate_0, 0, []).reply()
    big_w, big_h = max(width, cur_w), max(height, cur_h)
    if (big_w, big_h) != (cur_w, cur_h):
        randr.SetScreenSizeChecked(root, big_w, big_h, _mm(conn, big_w, True), _mm(conn, big_h, False)).check()
    rotation = current.rotation or xcffib.randr.Rotation.Rotate_0
    status = randr.SetCrtcConfig(crtc, res.timestamp, res.config_timestamp, 0, 0, mode, rotation, 1, [output]).reply().status
    if status != xcffib.randr.SetConfig.Success:
        raise ResizeError(f"the X server refused the mode {width}x{height} on its output (RandR status {status})")
    if (big_w, big_h) != (width, height):
        randr.SetScreenSizeChecked(root, width, height, _mm(conn, width, True), _mm(conn, height, False)).check()
    return Resized(width, height, created)


def can_resize(conn: Any, root: int) -> bool:
    """Whether the server has RandR 1.2+ outputs to resize (Xvfb's are fixed-size)."""
    try:
        randr = conn(xcffib.randr.key)
        res = randr.GetScreenResourcesCurrent(root).reply()
        return bool(res.outputs and res.crtcs)
    except (xcffib.Error, xcffib.ExtensionException):
        return False
