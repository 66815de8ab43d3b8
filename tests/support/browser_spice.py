"""spice-html5 in headless Chromium straight on the server's SPICE port (ws:// or wss://, no
websockify): the names the WebSocket tests were written against, now served by
support.html5 (both connection modes) and support.chromium (the browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import html5
from .chromium import CHROMEDRIVER, CHROMIUM, spki_hash
from .html5 import INSTALL_HINT, PAGE, SPICE_HTML5, errors, page_url, serve_page

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "INSTALL_HINT",
    "PAGE",
    "SPICE_HTML5",
    "errors",
    "missing_tools",
    "page_url",
    "read_canvas",
    "serve_page",
    "spki_hash",
    "start_chromium",
]


def missing_tools() -> list[str]:
    """What direct (websockify-less) spice-html5 runs lack here (empty: nothing)."""
    return html5.missing_tools(websockify=False)


def start_chromium(tmp: Path, trust_cert: Path | None = None) -> Any:
    return html5.chromium(tmp, trust_cert)


def read_canvas(driver: Any) -> np.ndarray | None:
    """The primary surface's canvas as an (h, w, 3) RGB array, or None before it exists."""
    rgba = html5.canvas(driver)
    return None if rgba is None else rgba[..., :3]
