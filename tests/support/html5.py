"""spice-html5 (the Debian package's files) in a real headless Chromium, connected in either
of the two ways a deployment uses:

    through websockify (`Bridge`), the WebSocket-to-TCP bridge, here with a WireTap behind it:
        Chromium --ws--> websockify (127.0.0.1) --tcp--> [WireTap] --> server
    straight to the server's SPICE port (`serve_page`), which speaks WebSocket itself:
        Chromium --ws:// or wss://--> server

Either way the browser loads one small page of ours (`PAGE`) next to spice-html5's files;
the page opens a `SpiceMainConn` on the `uri` query argument (with `password`) and records
what spice-html5 reports (errors, the success callback, its message log). `canvas()` reads
the primary surface's canvas back with getImageData: the pixels spice-html5 drew.
"""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from . import chromium as _chromium
from .processes import free_port, terminate

SPICE_HTML5 = Path("/usr/share/spice-html5")
CHROMIUM, CHROMEDRIVER = _chromium.CHROMIUM, _chromium.CHROMEDRIVER
INSTALL_HINT = "run scripts/setup.sh --test (it installs spice-html5, websockify, chromium, chromium-driver and selenium)"
PAGE_NAME = "viewer.html"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>spice-html5 under test</title>
<script type="module">
import * as SpiceHtml5 from './spice-html5/main.js';
window.html5 = {errors: [], connected: false};
const q = new URLSearchParams(location.search);
try {
  window.html5.conn = new SpiceHtml5.SpiceMainConn({
    uri: q.get('uri'), password: q.get('password') || '', screen_id: 'screen', message_id: 'messages',
    onerror: (e) => window.html5.errors.push(String(e && e.message || e)),
    onsuccess: () => { window.html5.connected = true; },
  });
} catch (e) { window.html5.errors.push('constructor: ' + e); }
</script></head>
<body><div id="screen"></div><div id="messages"></div></body></html>
"""

# The primary surface's canvas (display.js names it spice_surface_<id> and puts the
# primary one in screen_id), read back whole; base64 in slices (apply's argument limit).
READ_CANVAS = """
const c = document.querySelector('#screen canvas');
if (!c) return null;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let s = '';
for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
return [c.width, c.height, btoa(s)];
"""

READ_STATE = """
const h = window.html5 || {};
const lines = (c) => Array.from(document.querySelectorAll('#messages .spice-message-' + c), p => p.textContent);
return {errors: h.errors || [], connected: !!h.connected,
        log_err: lines('error'), log_warn: lines('warning'), log_info: lines('info')};
"""


def missing_tools(websockify: bool = True) -> list[str]:
    """What this machine lacks to run spice-html5 in Chromium (empty: nothing); websockify
    only for the bridged mode."""
    missing = _chromium.missing_tools()
    if not (SPICE_HTML5 / "main.js").is_file():
        missing.append(f"spice-html5 ({SPICE_HTML5})")
    if websockify and not shutil.which("websockify"):
        missing.append("websockify")
    return missing


def chromium(tmp: Path, trust_cert: Path | None = None) -> Any:
    """A headless Chromium for spice-html5 (`trust_cert`: the server's certificate, for wss://)."""
    return _chromium.start(tmp, trust_cert=trust_cert)


def write_site(root: Path) -> Path:
    """`root` as a web root: our page and spice-html5's files (ES modules do not load from file://)."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / "spice-html5"
    if not link.exists():
        link.symlink_to(SPICE_HTML5)
    (root / PAGE_NAME).write_text(PAGE)
    return root


def page_url(base: str, uri: str, password: str = "") -> str:
    """The page at `base` connecting to the SPICE WebSocket `uri`."""
    return base + "?" + urlencode({"uri": uri, "password": password})


# --- through websockify ----------------------------------------------------------------------


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"websockify exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"websockify not listening on {port} in {timeout}s:\n{log.read_text(errors='replace')}")


class Bridge:
    """websockify on 127.0.0.1: WebSocket (and the page's files) in front, TCP to `target_port` behind."""

    def __init__(self, target_port: int, tmp: Path) -> None:
        self.web = write_site(tmp / "html5-web")
        self.port = free_port()
        self.log_path = tmp / f"websockify-{self.port}.log"
        self._log = open(self.log_path, "wb")
        argv = ["websockify", "--web", str(self.web), f"127.0.0.1:{self.port}", f"127.0.0.1:{target_port}"]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, self.proc, self.log_path)

    def page_url(self, password: str = "") -> str:
        return page_url(f"http://127.0.0.1:{self.port}/{PAGE_NAME}", f"ws://127.0.0.1:{self.port}/websockify", password)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


# --- straight to the server's port ------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@contextmanager
def serve_page(tmp: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for our page and spice-html5's files; yields the page's URL
    (give it to `page_url` with the server's ws:// or wss:// URI)."""
    root = write_site(tmp / "html5-site")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/{PAGE_NAME}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- what the page shows -------------------------------------------------------------------


def state(driver: Any) -> dict[str, Any]:
    """What the page recorded: `errors` (onerror), `connected` (onsuccess), and spice-html5's
    own log lines by class (`log_err`, `log_warn`, `log_info` write them to message_id)."""
    return driver.execute_script(READ_STATE)


def errors(driver: Any) -> list[str]:
    """The errors spice-html5 reported through onerror."""
    return list(state(driver)["errors"])


def canvas(driver: Any) -> np.ndarray | None:
    """spice-html5's primary surface as (h, w, 4) R, G, B, A; None before it exists."""
    r = driver.execute_script(READ_CANVAS)
    if r is None:
        return None
    w, h, data = r
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(h, w, 4)


def diagnostics(driver: Any) -> str:
    """The page's state and the browser console, for a failure message."""
    s = state(driver)
    return (
        f"errors={s['errors']} connected={s['connected']}\nlog_err={s['log_err'][-20:]}\nlog_warn={s['log_warn'][-20:]}"
        f"\nlog_info={s['log_info'][-10:]}\nconsole={_chromium.console(driver)[-20:]}"
    )


def mismatch(canvas: np.ndarray | None, rgb: np.ndarray) -> int | str:
    """Pixels of spice-html5's canvas that differ from an RGB reference (or why not comparable)."""
    if canvas is None:
        return "no canvas yet"
    if canvas.shape[:2] != rgb.shape[:2]:
        return f"canvas {canvas.shape[:2]} != {rgb.shape[:2]}"
    if not (canvas[..., 3] == 255).all():  # a 32_xRGB surface: every pixel opaque
        return f"{int((canvas[..., 3] != 255).sum())} pixels not opaque"
    return int(np.any(canvas[..., :3] != rgb, axis=2).sum())


def wait_exact(
    driver: Any, expect: Callable[[], np.ndarray], what: str, timeout: float = 40.0, report: Callable[[], str] | None = None
) -> np.ndarray:
    """Until spice-html5's canvas equals `expect()` (called again each time: a server's
    framebuffer that may still be settling); returns that picture (RGB)."""
    deadline = time.monotonic() + timeout
    while True:
        want = expect()
        m = mismatch(canvas(driver), want)
        if m == 0:
            return want
        if time.monotonic() > deadline:
            raise AssertionError(f"spice-html5's canvas differs from {what}: {m}\n{(report or (lambda: diagnostics(driver)))()}")
        time.sleep(0.3)


class Html5Viewer:
    """One spice-html5 session in the browser, through a bridge to the server (or its tap)."""

    def __init__(self, driver: Any, bridge: Bridge, password: str = "") -> None:
        self.driver, self.bridge = driver, bridge
        driver.get(bridge.page_url(password))

    def state(self) -> dict[str, Any]:
        return state(self.driver)

    def canvas(self) -> np.ndarray | None:
        return canvas(self.driver)

    def console(self) -> list[str]:
        return _chromium.console(self.driver)

    def diagnostics(self) -> str:
        return f"{diagnostics(self.driver)}\nbridge:\n{self.bridge.log()[-2000:]}"

    def wait_exact(self, expect: Callable[[], np.ndarray], what: str, timeout: float = 40.0) -> np.ndarray:
        return wait_exact(self.driver, expect, what, timeout, self.diagnostics)
