"""A real Xvfb for the X11 source's tests, X programs on it, and its root window read back.

Xvfb runs with -noreset (otherwise it resets when its last client leaves, and modes
made with xrandr vanish) and RANDR; its framebuffer is as large as `max_size`, and
`xrandr --fb` sets the screen to any size up to that. The root window is read back
with xwd, independently of the server under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

from .processes import terminate, worker_index

TOOLS = ("Xvfb", "xwd", "xdotool", "xrandr", "xsetroot", "xev", "xterm", "xmodmap")
FIRST_DISPLAY = 90
DISPLAYS_PER_WORKER = 100


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _display_free(n: int) -> bool:
    return not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}")


class Xvfb:
    """`Xvfb :N` on a free display number from 90 up; `restart()` brings it back on the same N."""

    def __init__(
        self,
        tmp: Path,
        size: tuple[int, int] = (1024, 768),
        max_size: tuple[int, int] = (1920, 1080),
        number: int | None = None,
        args: tuple[str, ...] = (),
        depth: int = 24,
    ) -> None:
        self.tmp, self.max_size, self.args, self.depth = tmp, max_size, args, depth
        self.proc: subprocess.Popen[bytes] | None = None
        self.number = number if number is not None else self._pick()
        self.display = f":{self.number}"
        self._children: list[subprocess.Popen[bytes]] = []
        self._modes: set[str] = set()
        self.start(size)

    def _pick(self) -> int:
        first = FIRST_DISPLAY + DISPLAYS_PER_WORKER * worker_index()
        for n in range(first, first + DISPLAYS_PER_WORKER):
            if _display_free(n):
                return n
        raise RuntimeError(f"no free X display number from :{first} up")

    def _launch(self, argv: list[str], name: str) -> None:
        """Start the X server `argv` (its output in TMP/NAME-N.log) and wait until it answers."""
        path = self.tmp / f"{name}-{self.number}.log"
        with open(path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while (
            not os.path.exists(f"/tmp/.X11-unix/X{self.number}")
            or subprocess.run(["xdpyinfo"], env=self.env(), capture_output=True).returncode
        ):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} {self.display} exited: {path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} {self.display} not ready")
            time.sleep(0.05)

    def start(self, size: tuple[int, int] | None = None) -> None:
        w, h = self.max_size
        argv = [
            "Xvfb",
            self.display,
            "-screen",
            "0",
            f"{w}x{h}x{self.depth}",
            "+extension",
            "RANDR",
            "-noreset",
            "-nolisten",
            "tcp",
            *self.args,
        ]
        self._launch(argv, "xvfb")
        if size is not None and size != self.max_size:
            self.set_size(*size)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DISPLAY"] = self.display
        env.pop("XAUTHORITY", None)
        return env

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True, check=check, timeout=30)

    def spawn(self, *argv: str, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """An X program that runs until the test ends (or `close`)."""
        p = subprocess.Popen(list(argv), env=self.env(), stdout=stdout, stderr=subprocess.DEVNULL)
        self._children.append(p)
        return p

    def set_size(self, width: int, height: int) -> None:
        """The screen becomes width x height (at most max_size), as a user's `xrandr` does.

        Xvfb's one output has one mode; a mode of the new size is made, and the output and
        the screen set to it together (the pointer stays confined to the output's mode)."""
        mode = f"m{width}x{height}"
        if mode not in self._modes:
            timings = [str(v) for v in (width, width + 1, width + 2, width + 3, height, height + 1, height + 2, height + 3)]
            self.run("xrandr", "--newmode", mode, "10", *timings)
            self.run("xrandr", "--addmode", "screen", mode)
            self._modes.add(mode)
        self.run("xrandr", "--fb", f"{width}x{height}", "--output", "screen", "--mode", mode)

    def size(self) -> tuple[int, int]:
        out = self.run("xdpyinfo").stdout
        for line in out.splitlines():
            if "dimensions:" in line:
                w, h = line.split()[1].split("x")
                return int(w), int(h)
        raise RuntimeError("no dimensions in xdpyinfo")

    def root_image(self) -> np.ndarray:
        """The root window as (h, w, 3) RGB, read by xwd."""
        raw = subprocess.run(["xwd", "-root", "-silent"], env=self.env(), capture_output=True, check=True, timeout=30).stdout
        return parse_xwd(raw)

    def kill(self) -> None:
        """The X server dies (SIGKILL: no goodbye to its clients)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for p in self._children:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self._children.clear()
        self._modes.clear()
        for path in (f"/tmp/.X{self.number}-lock", f"/tmp/.X11-unix/X{self.number}"):
            try:
                os.unlink(path)  # what a killed Xvfb leaves behind
            except FileNotFoundError:
                pass

    def restart(self, size: tuple[int, int] | None = None) -> None:
        self.start(size)

    def stop(self) -> None:
        for p in self._children:
            terminate(p, 5)
        self._children.clear()
        if self.proc is not None:
            terminate(self.proc)


def parse_xwd(raw: bytes) -> np.ndarray:
    """An XWD (version 7) dump of a 24/32-bit TrueColor window -> (h, w, 3) RGB."""
    fields = struct.unpack(">25I", raw[:100])
    header_size, version = fields[0], fields[1]
    if version != 7:
        raise ValueError(f"XWD version {version}")
    width, height = fields[4], fields[5]
    byte_order, bpp, bytes_per_line = fields[7], fields[11], fields[12]
    red, green, blue = fields[14], fields[15], fields[16]
    ncolors = fields[19]
    if bpp not in (24, 32):
        raise ValueError(f"XWD with {bpp} bits per pixel")
    start = header_size + ncolors * 12
    rows = np.frombuffer(raw, dtype=np.uint8, count=bytes_per_line * height, offset=start).reshape(height, bytes_per_line)
    size = bpp // 8  # 24: xwd read windows of more than one visual (ffplay's SDL window is DirectColor), packed
    cells = np.zeros((height, width, 4), np.uint8)
    cells[..., :size] = rows[:, : width * size].reshape(height, width, size)
    if byte_order != 0:  # most significant byte first: right-align it in the big-endian word
        cells = np.roll(cells, 4 - size, axis=2)
    words = cells.view("<u4" if byte_order == 0 else ">u4").reshape(height, width)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for i, mask in enumerate((red, green, blue)):
        shift = (mask & -mask).bit_length() - 1
        out[..., i] = (words & mask) >> shift
    return out
