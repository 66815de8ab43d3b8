"""The admin dashboard in a real headless Chromium (selenium), against a real server and real clients.

The browser logs in with the token, watches the clients table fill in live (also for
a client that connects after the page loaded), and uses the page's own controls:
the "Allow multiple clients" box and each row's View-only and Disconnect buttons.
Every effect is checked from outside the browser too: through the REST API, and
through the spice-gtk process that was disconnected.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image
from support import chromium
from support.admin import TOKEN, write_token
from support.processes import ROOT, free_port

INSTALL_HINT = "run the README test command (scripts/test.sh), which installs chromium, chromium-driver and selenium"
SCREENSHOT_DOC = ROOT / "docs" / "images" / "admin-dashboard.png"
ARTIFACTS = ROOT / "test-artifacts"
MAX_PNG_BYTES = 300 * 1024


def _wait(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except Exception as exc:  # a DOM that is being redrawn (stale element): try again
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached: {exc!r}") from exc
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.1)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = chromium.missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    # 1400x900: the size of the dashboard screenshot in docs/images.
    driver = chromium.start(tmp_path, window=(1400, 900), extra_flags=["--disable-quic"], page_load_timeout=20)
    try:
        driver.set_window_size(1400, 900)
        yield driver
    finally:
        driver.quit()


# --- page helpers -------------------------------------------------------------------------


def _by():
    from selenium.webdriver.common.by import By

    return By


def login(driver: Any, port: int, token: str) -> None:
    By = _by()
    driver.get(f"http://127.0.0.1:{port}/")
    _wait(lambda: urlsplit(driver.current_url).path == "/login", what="redirect to /login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()


def live_row_ids(driver: Any) -> list[int]:
    """Ids of the rows dashboard.js drew (only its rows have buttons; the server-rendered ones do not)."""
    return [
        int(tr.get_attribute("data-id"))
        for tr in driver.find_elements(_by().CSS_SELECTOR, "#clients tbody tr")
        if tr.find_elements(_by().CSS_SELECTOR, "button.disconnect")
    ]


def click_in_row(driver: Any, client_id: int, button_class: str) -> None:
    """Click a row's button; the table is redrawn every second, so a found button may go stale first."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> bool:
        try:
            driver.find_element(_by().CSS_SELECTOR, f'#clients tbody tr[data-id="{client_id}"] button.{button_class}').click()
        except StaleElementReferenceException:
            return False
        return True

    _wait(attempt, what=f"click {button_class} of {client_id:#x}")


def row_cell(driver: Any, client_id: int, cls: str) -> str:
    return driver.find_element(_by().CSS_SELECTOR, f'#clients tbody tr[data-id="{client_id}"] td.{cls}').text


def fetch_in_page(driver: Any, path: str, method: str = "GET") -> dict[str, Any]:
    """A same-origin fetch() from the page, with whatever cookies the browser holds."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: arguments[1], credentials: 'same-origin'})"
        ".then(async r => done({status: r.status, text: await r.text()})).catch(e => done({status: -1, text: String(e)}));",
        path,
        method,
    )


def save_screenshot(driver: Any) -> int:
    """The dashboard as a PNG in test-artifacts/, and in docs/images (kept small for the
    repository) when UPDATE_DOC_SCREENSHOTS=1, so a test run leaves the checkout clean."""
    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")

    def encode(im: Image.Image) -> bytes:
        out = io.BytesIO()
        im.save(out, "PNG", optimize=True)
        return out.getvalue()

    data = encode(img)
    if len(data) > MAX_PNG_BYTES:  # flat UI colours: a 256-colour palette loses nothing visible
        data = encode(img.quantize(256, method=Image.Quantize.MEDIANCUT))
    if len(data) > MAX_PNG_BYTES:
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)
        data = encode(img.quantize(256, method=Image.Quantize.MEDIANCUT))
    assert len(data) < MAX_PNG_BYTES, len(data)
    targets = [ARTIFACTS / "admin-dashboard.png"]
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        targets.append(SCREENSHOT_DOC)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(data)


# --- tests --------------------------------------------------------------------------------


def test_dashboard_live_clients_and_controls(admin, spawn, browser):
    srv, api, clients = admin
    By = _by()
    login(browser, srv.admin_port, TOKEN)
    _wait(lambda: urlsplit(browser.current_url).path == "/", what="dashboard after login")
    assert browser.find_element(By.TAG_NAME, "h1").text == "spice-twisted"

    ids = [c["id"] for c in api.ok("GET", "/api/clients")]
    assert len(ids) == 2
    _wait(lambda: live_row_ids(browser) == ids, what="both clients in the live table")
    assert browser.find_element(By.ID, "client-count").text == "2"

    # A third client connects after the page loaded: it shows up without a reload.
    browser.execute_script("window.__sameDocument = 'yes';")
    third = spawn.client("--port", str(srv.port))
    third.wait_event("mark")
    third.wait_event("channel", channel="inputs", what="opened")
    ids = [c["id"] for c in api.ok("GET", "/api/clients")]
    assert len(ids) == 3
    _wait(lambda: live_row_ids(browser) == ids, what="the third client in the live table")
    assert browser.find_element(By.ID, "client-count").text == "3"
    assert browser.execute_script("return window.__sameDocument;") == "yes", "the page reloaded"
    clients.append(third)

    # "Allow multiple clients": off, then on again, each time as the API reports it.
    box = browser.find_element(By.ID, "allow-multiple")
    assert box.is_selected() and api.ok("GET", "/api/settings") == {"allow_multiple_clients": True}
    box.click()
    _wait(lambda: api.ok("GET", "/api/settings") == {"allow_multiple_clients": False}, what="allow_multiple_clients false")
    _wait(lambda: browser.find_element(By.ID, "status").text == "allow_multiple_clients = false", what="status line")
    box.click()
    _wait(lambda: api.ok("GET", "/api/settings") == {"allow_multiple_clients": True}, what="allow_multiple_clients true")

    # View-only from the second row's button.
    click_in_row(browser, ids[1], "toggle-view-only")
    _wait(lambda: api.ok("GET", f"/api/clients/{ids[1]}")["view_only"] is True, what="view_only true in the API")
    _wait(lambda: row_cell(browser, ids[1], "view-only") == "yes", what="view-only shown in the row")
    assert [c["view_only"] for c in api.ok("GET", "/api/clients")] == [False, True, False]
    _wait(
        lambda: browser.find_element(By.CSS_SELECTOR, f'#clients tbody tr[data-id="{ids[1]}"] button.toggle-view-only').text == "Let drive",
        what="the button now offers to let it drive",
    )

    size = save_screenshot(browser)
    assert size > 10_000  # a real picture of the page, not an empty one

    # Disconnect the third client from its row: its spice-gtk sees the main channel close.
    click_in_row(browser, ids[2], "disconnect")
    clients[2].wait_event("channel", channel="main", what="closed")
    _wait(lambda: live_row_ids(browser) == ids[:2], what="the disconnected client's row gone")
    _wait(lambda: browser.find_element(By.ID, "status").text == f"disconnected {ids[2]:#x}", what="status line")
    assert [c["id"] for c in api.ok("GET", "/api/clients")] == ids[:2]
    for c in clients[:2]:
        assert c.channel_events("main") == ["opened"]
    assert browser.execute_script("return window.__sameDocument;") == "yes"


def test_wrong_token_shows_error_and_no_session(admin, browser):
    srv, api, _ = admin
    By = _by()
    login(browser, srv.admin_port, "not-the-token-not-the-token")
    error = _wait(lambda: browser.find_elements(By.ID, "login-error"), what="the login error")
    assert error[0].text == "Wrong token."
    assert urlsplit(browser.current_url).path == "/login"
    assert not [c for c in browser.get_cookies() if c["name"] == "spice_admin_session"]
    # No session: the API refuses the page's calls and / sends the browser back to the form.
    refused = fetch_in_page(browser, "/api/clients")
    assert refused["status"] == 401, refused
    browser.get(f"http://127.0.0.1:{srv.admin_port}/")
    _wait(lambda: urlsplit(browser.current_url).path == "/login", what="redirect to /login")
    assert not browser.find_elements(By.ID, "clients")

    # The right token then works, and logging out ends the session.
    login(browser, srv.admin_port, TOKEN)
    _wait(lambda: len(live_row_ids(browser)) == 2, what="the dashboard")
    assert fetch_in_page(browser, "/api/clients")["status"] == 200
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    _wait(lambda: urlsplit(browser.current_url).path == "/login", what="the login form after logging out")
    assert fetch_in_page(browser, "/api/clients")["status"] == 401


def test_cookie_session_needs_csrf_token(admin, browser):
    """A logged-in browser can read, but a change without the page's CSRF token is refused (403)."""
    srv, api, _ = admin
    login(browser, srv.admin_port, TOKEN)
    _wait(lambda: len(live_row_ids(browser)) == 2, what="the dashboard")
    forged = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/settings', {method: 'PATCH', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({allow_multiple_clients: false})})"
        ".then(async r => done({status: r.status, body: await r.json()}));"
    )
    assert forged["status"] == 403 and forged["body"] == {"error": "missing or wrong CSRF token", "status": 403}
    assert api.ok("GET", "/api/settings") == {"allow_multiple_clients": True}


def test_html_in_source_name_is_shown_as_text(spawn, tmp_path, browser):
    """The source name comes from the command line (image:PATH): markup in it stays text."""
    evil = '<img src=x onerror="window.pwned=1">'
    picture = tmp_path / f"{evil}.png"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(picture)
    write_token(tmp_path / "admin-token", TOKEN)
    port = free_port()
    spawn.server("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), "--source", f"image:{picture}")
    By = _by()
    login(browser, port, TOKEN)
    _wait(lambda: urlsplit(browser.current_url).path == "/", what="dashboard after login")

    # The page as the server rendered it (Jinja), before dashboard.js redraws it.
    raw = fetch_in_page(browser, "/")
    assert raw["status"] == 200
    assert "&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;" in raw["text"]
    assert evil not in raw["text"]

    # After dashboard.js redrew the facts (only it writes "admin port").
    _wait(lambda: "admin port" in browser.find_element(By.ID, "s-listen").text, what="a live refresh")
    source = browser.find_element(By.ID, "s-source")
    assert source.text == f"image:{picture} (64x48)"
    assert source.find_elements(By.TAG_NAME, "img") == []
    assert browser.find_elements(By.CSS_SELECTOR, "img:not(#thumbnail)") == []  # the display's picture is the only image
    assert browser.execute_script("return window.pwned === undefined;")


def test_templates_autoescape():
    """Every template of AdminApp's Jinja environment escapes what it is given."""
    from admin_ui.app import AdminApp

    env = AdminApp(server=None, token=TOKEN).env
    script = "<script>alert(1)</script>"
    attr = '"><script>alert(2)</script>'
    server = {
        "endpoints": {"listen": script, "port": 5900, "tls_port": 0},
        "source": script,
        "width": 1,
        "height": 1,
        "uptime": 1.0,
        "mouse_mode": script,
        "ticket": {"enabled": False},
        "render": {"drawables": 0, "encodes": script, "draws_sent": 0, "streams": {"active": []}},
        "allow_multiple_clients": True,
    }
    client = {
        "id": 1,
        "address": script,
        "primary": True,
        "view_only": False,
        "bytes_per_second": 0,
        "rtt_ms": script,
        "image_mode": script,
        "coalesced": 0,
        "video": {"playing": 1, "codecs": [script], "tier": "low", "frames_sent": 3},
    }
    pages = [
        env.get_template("dashboard.html").render(server=server, clients=[client], csrf=attr),
        env.get_template("login.html").render(error=script, csrf=attr),
    ]
    for html in pages:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert 'value="&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in html
    assert pages[0].count("&lt;script&gt;alert(1)") >= 7
