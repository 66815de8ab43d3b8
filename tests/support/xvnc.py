"""TigerVNC's Xvnc as an X server that can change its size through RandR.

Xvfb's framebuffer is fixed at start (RandR only picks sizes within it); Xvnc reallocates
its framebuffer on RRSetScreenSize and takes new modes (RRCreateMode, AddOutputMode) on
its output VNC-0, as a desktop under a real driver does. Its RFB side is switched off
(-rfbport -1): only X clients talk to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .xvfb import Xvfb

TOOLS = ("Xvnc", "xclip", "xdpyinfo", "xrandr", "xwd")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


class Xvnc(Xvfb):
    """`Xvnc :N -geometry WxH`: the same helpers as Xvfb (run, spawn, size, root_image)."""

    def __init__(self, tmp: Path, size: tuple[int, int] = (800, 600), **kw) -> None:
        self.initial = size
        super().__init__(tmp, size=size, max_size=size, **kw)

    def start(self, size: tuple[int, int] | None = None) -> None:
        w, h = size or self.initial
        argv = ["Xvnc", self.display, "-geometry", f"{w}x{h}", "-depth", str(self.depth), "-SecurityTypes", "None"]
        argv += ["-rfbport", "-1", "-nolisten", "tcp", "-noreset", *self.args]
        self._launch(argv, "xvnc")
