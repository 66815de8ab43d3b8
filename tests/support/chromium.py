"""A headless Debian Chromium driven by the system chromedriver (selenium): the one way the
browser tests (spice-html5, the admin dashboard) start a browser."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing_tools() -> list[str]:
    """What this machine lacks to drive Chromium (empty: nothing)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    return missing


def spki_hash(cert_pem: Path) -> str:
    """The certificate's public key as Chromium's --ignore-certificate-errors-spki-list wants
    it: this one key is trusted, nothing else is."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def start(
    tmp: Path,
    *,
    window: tuple[int, int] = (1400, 1000),
    trust_cert: Path | None = None,
    extra_flags: Iterable[str] = (),
    page_load_timeout: float = 30,
    script_timeout: float = 60,
) -> Any:
    """A headless Chromium with its own profile and chromedriver log under `tmp`; the browser
    console is kept (goog:loggingPrefs) for diagnostics. `trust_cert`: a PEM certificate whose
    key alone is trusted for TLS (a test server's self-signed one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    tmp.mkdir(parents=True, exist_ok=True)
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
        f"--window-size={window[0]},{window[1]}",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *extra_flags,
    ]
    if trust_cert is not None:
        flags.append(f"--ignore-certificate-errors-spki-list={spki_hash(trust_cert)}")
    for flag in flags:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(page_load_timeout)
    driver.set_script_timeout(script_timeout)
    return driver


def console(driver: Any) -> list[str]:
    """The browser console's messages so far (empty for a driver without the log endpoint)."""
    try:
        return [e["message"] for e in driver.get_log("browser")]
    except Exception:
        return []
