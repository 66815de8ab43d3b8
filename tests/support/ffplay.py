"""A real video player in Xvfb for the X11 source's stream tests: ffplay playing a clip
that ffmpeg makes from its lavfi sources (nothing downloaded).

The clip is photo-like (a smooth colour field: codecs.classify takes it for a photo, so
render/streams.py makes it a stream) and changes slowly (its hue turns once in
CLIP_SECONDS), so the client's picture compared with the X root window read a moment
later has a meaningful PSNR; the hue's turn is whole over the clip, so looping it is
seamless. ffplay draws through SDL2's software renderer (the window's framebuffer put
with MIT-SHM), as a player without GPU output does; its window has no frame and sits
where it is told (no window manager runs), but its rect is read back from X anyway.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spice_twisted.render.rect import Rect

from .processes import wait_until

SIZE = (320, 180)
FPS = 25
CLIP_SECONDS = 10
TITLE = "spice-twisted ffplay"
# One still frame of sines (cheap: geq runs once), repeated, its hue turned with time.
_FIELD = "geq=r='128+100*sin(X/26)*cos(Y/18)':g='128+100*sin((X+Y)/34)':b='128+100*cos(hypot(X-{cx},Y-{cy})/20)'"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} missing: run scripts/setup.sh --test (apt package ffmpeg)")
    return path


def make_clip(directory: Path) -> Path:
    """An MJPEG clip of SIZE at FPS, CLIP_SECONDS long, in `directory` (about 0.5 s of CPU)."""
    w, h = SIZE
    frames = CLIP_SECONDS * FPS
    graph = (
        f"color=c=black:s={w}x{h}:r={FPS}:d={1 / FPS},{_FIELD.format(cx=w // 2, cy=h // 2)},"
        f"loop=loop={frames - 1}:size=1,hue=H=2*PI*t/{CLIP_SECONDS}:s=1.2"
    )
    path = directory / "clip.avi"
    subprocess.run(
        [_need("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", graph, "-c:v", "mjpeg", "-q:v", "3", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def window_rect(xvfb, title: str = TITLE) -> Rect | None:
    """The rect of the viewable top-level window called `title` on the root, or None."""
    out = xvfb.run("xwininfo", "-name", title, check=False).stdout
    if "IsViewable" not in out:
        return None
    v = {k: int(n) for k, n in re.findall(r"(Absolute upper-left [XY]|Width|Height):\s+(-?\d+)", out)}
    x, y = v["Absolute upper-left X"], v["Absolute upper-left Y"]
    return Rect(x, y, x + v["Width"], y + v["Height"])


def play(xvfb, clip: Path, left: int, top: int) -> tuple[subprocess.Popen[bytes], Rect]:
    """ffplay looping `clip` in a borderless window at (left, top) on `xvfb`, without sound;
    returns it once its window is viewable, and the window's rect as X has it."""
    w, h = SIZE
    player = xvfb.spawn(
        "env", "SDL_VIDEODRIVER=x11", "SDL_RENDER_DRIVER=software", "SDL_AUDIODRIVER=dummy",
        _need("ffplay"), "-v", "error", "-an", "-sn", "-loop", "0", "-noborder",
        "-left", str(left), "-top", str(top), "-x", str(w), "-y", str(h), "-window_title", TITLE, str(clip),
    )  # fmt: skip

    def viewable() -> Rect | None:
        if player.poll() is not None:
            raise AssertionError(f"ffplay exited with {player.returncode}")
        return window_rect(xvfb)

    return player, wait_until(viewable, 30, "ffplay's window viewable")
