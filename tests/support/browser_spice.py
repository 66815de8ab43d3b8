"""spice-html5 (Debian's /usr/share/spice-html5) in a real headless Chromium, talking to the
server's SPICE port directly over ws:// or wss:// (no websockify).

`serve_page()` serves the spice-html5 files and a small page of ours over HTTP from
127.0.0.1 (ES modules do not load from file://); the page connects to the `uri` query
argument and exposes the primary canvas's pixels to the test (`read_canvas`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SPICE_HTML5 = Path("/usr/share/spice-html5")
INSTALL_HINT = "run scripts/setup.sh --test (chromium, chromium-driver, spice-html5, selenium)"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>spice-html5 test page</title></head>
<body>
<div id="spice-screen"></div><div id="message-div"></div>
<script type="module">
import * as SpiceHtml5 from './spice-html5/main.js';
const q = new URLSearchParams(location.search);
window.spiceErrors = [];
window.spiceConn = new SpiceHtml5.SpiceMainConn({
  uri: q.get('uri'), screen_id: 'spice-screen', message_id: 'message-div',
  password: q.get('password') || '',
  onerror: (e) => window.spiceErrors.push(String(e && (e.message || e))),
});
window.readCanvas = function () {
  const c = document.getElementById('spice_surface_0');
  if (!c) return null;
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
  return {w: c.width, h: c.height, rgba: btoa(s)};
};
</script>
</body></html>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@contextmanager
def serve_page(tmp: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for our page and the spice-html5 files; yields its base URL."""
    root = tmp / "html5-site"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text(PAGE)
    link = root / "spice-html5"
    if not link.exists():
        link.symlink_to(SPICE_HTML5)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


def page_url(base: str, uri: str, password: str = "") -> str:
    return base + "?" + urlencode({"uri": uri, "password": password})


def spki_hash(cert_pem: Path) -> str:
    """The certificate's public key as Chromium's --ignore-certificate-errors-spki-list wants
    it: this one key is trusted, nothing else is."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def missing_tools() -> list[str]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not (SPICE_HTML5 / "main.js").exists():
        missing.append(str(SPICE_HTML5))
    return missing


def start_chromium(tmp: Path, trust_cert: Path | None = None) -> Any:
    """Headless Debian Chromium through selenium and the system chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    flags = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ]
    if trust_cert is not None:
        flags.append(f"--ignore-certificate-errors-spki-list={spki_hash(trust_cert)}")
    for flag in flags:
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def read_canvas(driver: Any) -> np.ndarray | None:
    """The primary surface's canvas as an (h, w, 3) RGB array, or None before it exists."""
    got = driver.execute_script("return window.readCanvas ? window.readCanvas() : null;")
    if not got:
        return None
    rgba = np.frombuffer(base64.b64decode(got["rgba"]), dtype=np.uint8).reshape(got["h"], got["w"], 4)
    return rgba[..., :3]


def errors(driver: Any) -> list[str]:
    return list(driver.execute_script("return window.spiceErrors || [];"))
