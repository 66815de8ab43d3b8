"""The interface every display source offers the server: drawing out, input in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..render.surface import DEFAULT_MAX_SURFACE, SurfaceBound

if TYPE_CHECKING:
    from ..inputs import InputOrigin
    from ..render.cursor import CursorService
    from ..render.service import RenderService
    from .desktop_agent import DesktopAgent


def rgb_to_xrgb(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) RGB -> (h, w, 4) in SPICE 32-bit memory order B, G, R, X."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 4), dtype=np.uint8)
    out[..., 0] = rgb[..., 2]
    out[..., 1] = rgb[..., 1]
    out[..., 2] = rgb[..., 0]
    out[..., 3] = 0
    return out


def message_frame(width: int, height: int, lines: list[str], bg: tuple[int, int, int], min_size: int = 12) -> np.ndarray:
    """A plain frame with a few centred lines (the first brighter): what a source shows
    while what it serves is not there, (h, w, 4) B G R X."""
    img = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(img)
    size = max(min_size, min(width, height) // 24)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    y = height // 2 - size
    for i, line in enumerate(lines):
        box = d.textbbox((0, 0), line, font=font)
        d.text(((width - (box[2] - box[0])) // 2, y), line, font=font, fill=(230, 230, 230) if i == 0 else (160, 160, 160))
        y += int(size * 1.5)
    return rgb_to_xrgb(np.asarray(img))


class DisplaySource:
    """A source knows its size, draws into `render.primary.pixels`, commits rects, and may
    take input. Input methods get surface coordinates and who sent the event; the
    defaults ignore input (a still picture has nothing to do with it)."""

    width: int = 0
    height: int = 0
    name: str = "source"
    paused: bool = False  # a paused source commits nothing (tests compare still frames)
    accepts_absolute: bool = False  # True: clients may use client mouse mode (absolute positions)
    # False: width x height is a stand-in until what is served tells its own size (a VM
    # not yet connected); the start-up block says so instead of presenting it as the size.
    size_known: bool = True
    # --max-surface: a source whose size is known at start is refused then (a usage error);
    # one that changes size later (a VM, an X display, an image resized) keeps the surface
    # it has and shows why, see `bind_bound`.
    max_surface: SurfaceBound = DEFAULT_MAX_SURFACE

    def start(self, render: RenderService, cursor: CursorService) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def pointer(self, origin: InputOrigin, x: int, y: int, buttons: int) -> None:
        """The pointer of `origin` is at (x, y) with `buttons` (bit 0 left, 1 middle, 2 right) held."""

    def button(self, origin: InputOrigin, button: int, pressed: bool, x: int, y: int, buttons: int) -> None:
        """Button 1 left, 2 middle, 3 right, 4/5 wheel up/down, pressed or released at (x, y)."""

    def key(self, origin: InputOrigin, key: int, pressed: bool) -> None:
        """A set-1 scancode, +0x100 for E0-extended keys."""

    def locks(self, modifiers: int) -> None:
        """Lock LEDs changed: bit 0 scroll, 1 num, 2 caps."""

    # Set by the server before start(): how a source tells clients what they should know
    # (every client's main channel gets a NOTIFY) and reports lock LEDs it owns (X's).
    notify_clients: Callable[[str], None] | None = None
    # What a client that links now is told too (a NOTIFY after MAIN_INIT), while it holds: the
    # last news given by notify_clients that is still true (a VM unavailable, oversized).
    notice: str | None = None
    report_locks: Callable[[int], None] | None = None

    def client_gone(self, origin: InputOrigin) -> None:
        """The client `origin` disconnected: release whatever it held (keys, buttons)."""

    def bind_bound(self, render: RenderService) -> None:
        """From start(): the render service refuses any resize past our bound (the backstop
        behind the source's own check)."""
        render.max_surface = self.max_surface

    def desktop_agent(self) -> DesktopAgent | None:
        """Clipboard and resize for the server's built-in agent (sources/desktop_agent.py);
        None: this source has neither."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the source wants shown in stats."""
        return {"name": self.name}
