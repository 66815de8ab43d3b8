"""spice-html5 (the Debian package's files) in a real headless Chromium, reaching the
server through websockify, the WebSocket-to-TCP bridge every spice-html5 deployment uses.

    Chromium --ws--> websockify (127.0.0.1) --tcp--> [WireTap] --> server

`Html5Viewer` serves a small page of ours next to spice-html5's files (websockify's
own web server, `--web`), the page opens a `SpiceMainConn` on the bridge's ws:// URL
and records what spice-html5 reports (errors, the success callback, its message log).
`canvas()` reads the primary surface's canvas back with getImageData: the pixels
spice-html5 drew, as R, G, B, A.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from .processes import free_port, terminate

SPICE_HTML5 = Path("/usr/share/spice-html5")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "run scripts/setup.sh --test (it installs spice-html5, websockify, chromium, chromium-driver and selenium)"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>spice-html5 under test</title>
<script type="module">
import * as SpiceHtml5 from './spice-html5/main.js';
window.html5 = {errors: [], connected: false};
const uri = new URLSearchParams(location.search).get('uri');
try {
  window.html5.conn = new SpiceHtml5.SpiceMainConn({
    uri: uri, password: '', screen_id: 'screen', message_id: 'messages',
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


def missing_tools() -> list[str]:
    """What this machine lacks to run spice-html5 in Chromium (empty: nothing)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not (SPICE_HTML5 / "main.js").is_file():
        missing.append(f"spice-html5 ({SPICE_HTML5})")
    if not shutil.which("websockify"):
        missing.append("websockify")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    return missing


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
        self.web = tmp / "html5-web"
        self.web.mkdir(exist_ok=True)
        link = self.web / "spice-html5"
        if not link.exists():
            link.symlink_to(SPICE_HTML5)
        (self.web / "viewer.html").write_text(PAGE)
        self.port = free_port()
        self.log_path = tmp / f"websockify-{self.port}.log"
        self._log = open(self.log_path, "wb")
        argv = ["websockify", "--web", str(self.web), f"127.0.0.1:{self.port}", f"127.0.0.1:{target_port}"]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, self.proc, self.log_path)

    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/viewer.html?uri=ws://127.0.0.1:{self.port}/websockify"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


def chromium(tmp: Path) -> Any:
    """A headless Chromium driven by chromedriver (selenium)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    tmp.mkdir(parents=True, exist_ok=True)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    return driver


class Html5Viewer:
    """One spice-html5 session in the browser, through a bridge to `target_port`."""

    def __init__(self, driver: Any, bridge: Bridge) -> None:
        self.driver, self.bridge = driver, bridge
        driver.get(bridge.page_url())

    def state(self) -> dict[str, Any]:
        """What the page recorded: `errors` (onerror), `connected` (onsuccess), and spice-html5's
        own log lines by class (`log_err`, `log_warn`, `log_info` write them to message_id)."""
        return self.driver.execute_script(
            "const h = window.html5 || {};"
            "const lines = (c) => Array.from(document.querySelectorAll('#messages .spice-message-' + c), p => p.textContent);"
            "return {errors: h.errors || [], connected: !!h.connected,"
            " log_err: lines('error'), log_warn: lines('warning'), log_info: lines('info')};"
        )

    def canvas(self) -> np.ndarray | None:
        """spice-html5's primary surface as (h, w, 4) R, G, B, A; None before it exists."""
        r = self.driver.execute_script(READ_CANVAS)
        if r is None:
            return None
        w, h, data = r
        return np.frombuffer(base64.b64decode(data), np.uint8).reshape(h, w, 4)

    def console(self) -> list[str]:
        try:
            return [e["message"] for e in self.driver.get_log("browser")]
        except Exception:  # a driver without the log endpoint
            return []

    def diagnostics(self) -> str:
        s = self.state()
        return (
            f"errors={s['errors']} connected={s['connected']}\nlog_err={s['log_err'][-20:]}\nlog_warn={s['log_warn'][-20:]}"
            f"\nlog_info={s['log_info'][-10:]}\nconsole={self.console()[-20:]}\nbridge:\n{self.bridge.log()[-2000:]}"
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
