"""What the agent tests do as a viewer would: paste (wait for the agent's grab, ask for
UTF8_TEXT), press Ctrl+key in the demo, and know the demo's text line showing some text."""

from __future__ import annotations

from typing import Any

import numpy as np

from spice_twisted.sources.demo import TEXT_BOX, DemoSource
from support.processes import as_rgb

CTRL = 0x1D


def press_ctrl(client: Any, key: int) -> None:
    client.send(f"keydown {CTRL:#x}")
    client.send(f"key {key:#x}")
    client.send(f"keyup {CTRL:#x}")


def paste(receiver: Any, sel: int = 0, start: int = 0, timeout: float = 20.0) -> str:
    """Wait for a grab offering UTF8_TEXT (after event `start`), request it, return the text."""
    receiver.wait_for(lambda e: e.get("event") == "clip-grab" and e["sel"] == sel and 1 in e["types"], timeout=timeout, start=start)
    mark = len(receiver.events)
    receiver.command(f"clip_request {sel} 1", "clip_request")
    got = receiver.wait_for(lambda e: e.get("event") == "clip-data" and e["sel"] == sel, timeout=timeout, start=mark)
    assert got["type"] == 1, got
    return got["text"]


def text_line(typed: str) -> np.ndarray:
    """The demo's text line showing `typed` (RGB), as the demo draws it."""
    demo = DemoSource()
    demo.typed = typed
    return as_rgb(demo._text_pixels())


def shows_text_line(fb: np.ndarray, typed: str) -> bool:
    """Whether framebuffer `fb` (B, G, R, X) shows `typed` on the demo's text line."""
    t = TEXT_BOX
    return bool(np.array_equal(as_rgb(fb)[t.top : t.bottom, t.left : t.right], text_line(typed)))
