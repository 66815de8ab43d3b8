"""The admin site's /watch page (issue 19, item 2) in headless Debian Chromium: spice-html5
served by the admin site from the system's copy, our page connecting to the SPICE port over
WebSocket. The canvas read back equals the server's framebuffer; a wrong password shows an
error (not a hang); a view-only watcher's mouse and keys never reach the server (its inputs
channel receives nothing and the demo paints no stroke for it) while a driving browser's
drag and keys paint in the demo, which a spice-gtk client beside them shows exactly; without spice-html5 the page says how to install it."""

from __future__ import annotations

import base64
import http.client
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.admin import TOKEN, write_token
from support.browser_spice import INSTALL_HINT, missing_tools, start_chromium
from support.processes import as_rgb, free_port, wait_match, wait_until

PASSWORD = "watch-pass"

READ_CANVAS = """
const c = document.getElementById('spice_surface_0');
if (!c) return null;
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let s = '';
for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
return {w: c.width, h: c.height, rgba: btoa(s)};
"""


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    drivers: list[Any] = []

    def make(trust_cert: Path | None = None) -> Any:
        profile = tmp_path / f"browser-{len(drivers)}"
        profile.mkdir()
        drivers.append(start_chromium(profile, trust_cert))
        return drivers[-1]

    yield make
    for d in drivers:
        d.quit()


def admin_server(spawn: Any, tmp_path: Path, *args: str) -> tuple[Any, int]:
    write_token(tmp_path / "admin-token", TOKEN)
    port = free_port()
    return spawn.harness("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), *args), port


def canvas(driver: Any) -> np.ndarray | None:
    got = driver.execute_script(READ_CANVAS)
    if not got:
        return None
    return np.frombuffer(base64.b64decode(got["rgba"]), dtype=np.uint8).reshape(got["h"], got["w"], 4)[..., :3]


def wait_canvas_equals(driver: Any, expect: np.ndarray, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = canvas(driver)
        if got is not None and got.shape == expect.shape and np.array_equal(got, expect):
            return
        if time.monotonic() > deadline:
            state = "no canvas" if got is None else f"shape {got.shape}" if got.shape != expect.shape else "pixels differ"
            raise AssertionError(f"/watch canvas never equalled {what}: {state}; state {state_of(driver)}")
        time.sleep(0.3)


def state_of(driver: Any) -> str | None:
    return driver.execute_script("return window.watchState || null;")


def open_watch(
    driver: Any, admin_port: int, password: str | None = None, view_only: bool = False, query: str = "", scheme: str = "http"
) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{scheme}://127.0.0.1:{admin_port}/watch" + ("?view=1" if view_only else query))
    wait_until(lambda: state_of(driver) == "ready", timeout=30, what="the watch page's script loaded")
    assert driver.find_element(By.ID, "view-only").is_selected() is view_only
    if password is not None:
        box = driver.find_element(By.ID, "password")
        box.clear()
        box.send_keys(password)
    driver.find_element(By.ID, "connect").click()


def test_watch_shows_the_framebuffer_and_a_wrong_password_errors(spawn, random_image, tmp_path, chromium):
    from selenium.webdriver.common.by import By

    path, rgb = random_image
    (tmp_path / "pw").write_text(PASSWORD)
    server, admin_port = admin_server(spawn, tmp_path, "--source", f"image:{path}", "--password-file", str(tmp_path / "pw"))
    driver = chromium()

    open_watch(driver, admin_port, "not-the-password")
    wait_until(lambda: state_of(driver) == "error", timeout=60, what="an error for the wrong password")
    assert driver.find_element(By.ID, "watch-error").text == "Wrong password."
    assert canvas(driver) is None

    # The same page, the right password: the display, exactly, before and after updates.
    driver.find_element(By.ID, "password").clear()
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "connect").click()
    framebuffer = as_rgb(server.framebuffer())
    wait_canvas_equals(driver, framebuffer, "the server's framebuffer")
    assert np.array_equal(framebuffer, rgb)
    assert state_of(driver) == "connected"
    server.command("updates 5", "updates", timeout=60)
    framebuffer = as_rgb(server.framebuffer())
    assert not np.array_equal(framebuffer, rgb)
    wait_canvas_equals(driver, framebuffer, "the framebuffer after 5 updates")
    # Full-window: the frame fills the browser's viewport, the display whole in its middle.
    frame, shown, view = driver.execute_script(
        "const box = (id) => { const r = document.getElementById(id).getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };"
        "return [box('watch-frame'), box('spice_surface_0'), [innerWidth, innerHeight]];"
    )
    assert frame == [0, 0, *view]
    left, top, width, height = shown
    assert (width, height) == (rgb.shape[1], rgb.shape[0])
    assert abs(left - (view[0] - width) / 2) <= 1 and abs(top - (view[1] - height) / 2) <= 1
    stats = server.stats()
    assert len(stats["clients"]) == 1 and stats["link_refusals"].get("PERMISSION_DENIED", 0) >= 1


def drag(driver: Any, dx: int, dy: int) -> None:
    """Press on the canvas, move, release: a stroke on the demo desktop."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    target = driver.find_element(By.ID, "spice_surface_0")
    ActionChains(driver).move_to_element_with_offset(target, -200, 150).click_and_hold().move_by_offset(dx, dy).move_by_offset(
        dx, dy
    ).release().perform()


def test_view_only_watcher_sends_nothing_and_a_driver_paints(spawn, tmp_path, chromium):
    server, admin_port = admin_server(spawn, tmp_path)  # the demo desktop, no ticket
    driver, viewer = chromium(), chromium()
    open_watch(driver, admin_port)
    wait_until(lambda: canvas(driver) is not None and state_of(driver) == "connected", timeout=60, what="the driver's display")
    open_watch(viewer, admin_port, view_only=True)
    wait_until(lambda: canvas(viewer) is not None and state_of(viewer) == "connected", timeout=60, what="the viewer's display")

    def inputs_received(client: dict) -> int:
        return next(ch["messages_received"] for ch in client["channels"] if ch["channel"] == "inputs")

    def inputs_synced() -> list | None:
        """Both inputs channels open and past their ACK_SYNC (spice-html5's answer to the
        server's SET_ACK, the one message it sends on that channel without input)."""
        clients = server.stats()["clients"]
        ok = len(clients) == 2 and all(
            any(ch["channel"] == "inputs" and ch["messages_received"] >= 1 for ch in c["channels"]) for c in clients
        )
        return clients if ok else None

    drv, view = sorted(wait_until(inputs_synced, timeout=60, what="both browsers' inputs channels"), key=lambda c: not c["primary"])
    assert drv["primary"] and not view["primary"]

    # A spice-gtk client watches beside them: it must see what the driving browser does.
    gtk = spawn.client("--port", str(server.port))
    gtk.wait_event("mark", timeout=60)

    # The view-only watcher drags and types first, then the driver drags and types.
    drag(viewer, 40, 20)
    viewer.find_element("id", "spice_surface_0").send_keys("viewer")
    drag(driver, 30, 25)
    wait_until(lambda: server.stats()["source_state"]["strokes"] >= 1, timeout=60, what="the driver's stroke in the demo")
    driver.find_element("id", "spice_surface_0").send_keys("hello")
    wait_until(lambda: "hello" in server.stats()["source_state"]["typed"], timeout=60, what="the driver's keys in the demo")
    assert "viewer" not in server.stats()["source_state"]["typed"]
    server.pause()  # the ball and clock stand still: spice-gtk shows the stroke and the keys
    wait_match(lambda: as_rgb(server.framebuffer()), [gtk], "the demo after the browser's stroke and keys", timeout=60)
    server.resume()

    clients = {c["id"]: c for c in server.stats()["clients"]}
    seen = clients[view["id"]]
    assert inputs_received(seen) == inputs_received(view)  # not one message more
    assert seen["input_events"] == 0 and seen["input_dropped"] == 0
    assert clients[drv["id"]]["input_events"] > 0 and inputs_received(clients[drv["id"]]) > inputs_received(drv)


def test_watch_without_spice_html5_says_how_to_install(spawn, tmp_path):
    empty = tmp_path / "no-html5"
    empty.mkdir()
    server, admin_port = admin_server(spawn, tmp_path, "--html5-dir", str(empty))
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/watch", timeout=10) as r:
        page = r.read().decode()
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert 'id="not-installed"' in page and "apt install spice-html5" in page and str(empty) in page
    assert "watch.js" not in page
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/watch/spice-html5/main.js", timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 404
    else:
        raise AssertionError("main.js served without spice-html5")


def test_spice_over_the_admin_sites_ws_path(spawn, random_image, tmp_path, chromium):
    """Item 1's /ws: spice-html5 reaches the SPICE link through the admin port alone, beside
    a spice-gtk client on the SPICE port; the admin site still answers HTTP on that port."""
    path, rgb = random_image
    (tmp_path / "pw").write_text(PASSWORD)
    server, admin_port = admin_server(spawn, tmp_path, "--source", f"image:{path}", "--password-file", str(tmp_path / "pw"))
    gtk = spawn.client("--port", str(server.port), "--password", PASSWORD)
    gtk.wait_event("mark", timeout=60)
    driver = chromium()
    open_watch(driver, admin_port, PASSWORD, query="?via=ws")
    framebuffer = as_rgb(server.framebuffer())
    wait_canvas_equals(driver, framebuffer, "the server's framebuffer over /ws")
    server.command("updates 5", "updates", timeout=60)
    framebuffer = as_rgb(server.framebuffer())
    wait_canvas_equals(driver, framebuffer, "the framebuffer after 5 updates over /ws")
    clients = server.stats()["clients"]
    assert len(clients) == 2
    # Still the admin site on that port: the API, and /ws only as a connection's first request.
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    conn.request("GET", "/api/openapi.json")
    assert conn.getresponse().read() and True
    conn.request("GET", "/ws")
    later = conn.getresponse()
    assert later.status == 400 and b"first request" in later.read()
    conn.close()
    # A wrong password over /ws is refused like on the SPICE port.
    other = chromium()
    open_watch(other, admin_port, "not-the-password", query="?via=ws")
    wait_until(lambda: state_of(other) == "error", timeout=60, what="an error for the wrong password over /ws")
    assert len(server.stats()["clients"]) == 2


@pytest.mark.parametrize("via", ["tls-port", "admin-ws"])
def test_watch_over_https_uses_wss(spawn, random_image, certs, tmp_path, chromium, via):
    """Served over HTTPS, the page opens wss:// (a page over HTTPS may not open ws://): to the
    SPICE TLS port, or with ?via=ws to the admin port's own /ws inside its TLS."""
    path, rgb = random_image
    (tmp_path / "pw").write_text(PASSWORD)
    tls_port = free_port()
    server, admin_port = admin_server(
        spawn,
        tmp_path,
        "--source",
        f"image:{path}",
        "--password-file",
        str(tmp_path / "pw"),
        "--tls-port",
        str(tls_port),
        "--cert",
        str(certs["cert"]),
        "--key",
        str(certs["key"]),
        "--admin-tls",
    )
    driver = chromium(certs["cert"])  # trusts that one key, nothing else
    open_watch(driver, admin_port, PASSWORD, query="?via=ws" if via == "admin-ws" else "", scheme="https")
    wait_canvas_equals(driver, rgb, "the picture over wss://")
    expect = f"wss://127.0.0.1:{admin_port}/ws" if via == "admin-ws" else f"wss://127.0.0.1:{tls_port}/"
    assert driver.execute_script("return window.watchUri;") == expect
    channels = [ch for c in server.stats()["clients"] for ch in c["channels"]]
    assert channels and all(ch["tls"] for ch in channels)


def test_three_watchers_beside_two_spice_gtk_clients_show_the_same_pixels(spawn, random_image, tmp_path, chromium):
    """The issue's picture: three browsers on /watch (two on the SPICE port, one through the
    admin port's /ws, one of them view-only) and two spice-gtk clients show the server's
    framebuffer exactly, before and after updates, and /metrics counts all five."""
    from prometheus_client.parser import text_string_to_metric_families

    path, rgb = random_image
    (tmp_path / "pw").write_text(PASSWORD)
    # Three browsers on one address open up to 6 admin connections each while loading the page.
    more = ["--admin-max-connections-per-address", "32"]
    server, admin_port = admin_server(spawn, tmp_path, "--source", f"image:{path}", "--password-file", str(tmp_path / "pw"), *more)
    gtks = []
    for _ in range(2):
        gtks.append(spawn.client("--port", str(server.port), "--password", PASSWORD))
        gtks[-1].wait_event("mark", timeout=60)
    browsers = [chromium() for _ in range(3)]
    for driver, how in zip(browsers, [{}, {"view_only": True}, {"query": "?via=ws"}], strict=True):
        open_watch(driver, admin_port, PASSWORD, **how)
    framebuffer = as_rgb(server.framebuffer())
    assert np.array_equal(framebuffer, rgb)
    for i, driver in enumerate(browsers):
        wait_canvas_equals(driver, framebuffer, f"the framebuffer in browser {i}")
    wait_match(lambda: framebuffer, gtks, "the framebuffer", timeout=60)

    server.command("updates 20", "updates", timeout=60)
    framebuffer = as_rgb(server.framebuffer())
    for i, driver in enumerate(browsers):
        wait_canvas_equals(driver, framebuffer, f"the framebuffer after updates in browser {i}")
    wait_match(lambda: framebuffer, gtks, "the framebuffer after updates", timeout=60)

    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    assert families["spice_clients"].samples[0].value == 5
    displays = [s for s in families["spice_channel_updates_sent"].samples if s.labels["channel"] == "display"]
    assert len(displays) == 5 and all(s.value > 0 for s in displays)
