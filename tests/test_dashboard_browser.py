"""The live dashboard (issue 19, item 5) in headless Debian Chromium, beside the clients it
shows: three browsers on /watch (spice-html5: one on the SPICE port, one view-only, one
through the admin port's /ws) and two spice-gtk clients all show the server's framebuffer,
read from each page's canvas and each spice-gtk surface; the dashboard, opened in a second
window of the first browser, shows the display's thumbnail (its pixels, read back from the
page, are the framebuffer scaled), all five clients with their kinds (2 spice-gtk, 3
spice-html5), charts with points, and an events list with the sessions, the failed ticket,
and a disconnect with its reason. Three browsers in all: the machine has two cores."""

from __future__ import annotations

import base64
import io
import os
import re
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from support.admin import TOKEN, Api
from support.processes import ROOT, as_rgb, wait_match, wait_until
from test_dashboard_api import picture, scaled
from test_watch import PASSWORD, admin_server, chromium, open_watch, state_of, wait_canvas_equals  # noqa: F401 (chromium: a fixture)

from spice_twisted.sources.demo_video import VIDEO
from spice_twisted.wire.enums import MsgDisplay

SCREENSHOT_DOC = ROOT / "docs" / "images" / "dashboard-live.png"
ARTIFACTS = ROOT / "test-artifacts"
MAX_PNG_BYTES = 400 * 1024

READ_THUMBNAIL = """
const img = document.getElementById('thumbnail');
if (!img || !img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d');
ctx.drawImage(img, 0, 0);
const px = ctx.getImageData(0, 0, c.width, c.height).data;
let s = '';
for (let i = 0; i < px.length; i += 0x8000) s += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
return {w: c.width, h: c.height, src: img.getAttribute('src'), rgba: btoa(s)};
"""

ROWS = """
return Array.from(document.querySelectorAll('#clients tbody tr')).filter(tr => tr.querySelector('button.disconnect')).map(tr => ({
  id: Number(tr.dataset.id), kind: tr.dataset.kind,
  codec: tr.querySelector('td.codec').textContent, mode: tr.querySelector('td.mode').textContent,
  pipe: tr.querySelector('td.pipe').textContent, drops: tr.querySelector('td.drops').textContent,
  bandwidth: Number(tr.querySelector('svg.chart.bandwidth').dataset.points),
  rtt: Number(tr.querySelector('svg.chart.rtt').dataset.points),
  line: !!tr.querySelector('svg.chart.bandwidth polyline'),
}));
"""

EVENTS = "return Array.from(document.querySelectorAll('#events li')).map(li => [li.dataset.event, li.textContent]);"


def thumbnail(driver: Any) -> tuple[str, np.ndarray] | None:
    got = driver.execute_script(READ_THUMBNAIL)
    if not got:
        return None
    rgba = np.frombuffer(base64.b64decode(got["rgba"]), dtype=np.uint8).reshape(got["h"], got["w"], 4)
    return got["src"], rgba[..., :3].astype(np.int16)


def wait_thumbnail_shows(driver: Any, framebuffer: np.ndarray, what: str, not_src: str | None = None) -> str:
    """Until the page's thumbnail is the framebuffer scaled (JPEG: close, not exact)."""
    last: list[float] = []

    def close() -> str | None:
        got = thumbnail(driver)
        if got is None or got[0] == not_src:
            return None
        src, shown = got
        err = float(np.abs(shown - scaled(framebuffer, (shown.shape[1], shown.shape[0]))).mean())
        last[:] = [err]
        return src if err < 6 else None

    try:
        return wait_until(close, timeout=60, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last mean error {last}") from None


def login(driver: Any, port: int) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"http://127.0.0.1:{port}/")
    wait_until(lambda: urlsplit(driver.current_url).path == "/login", timeout=30, what="the login form")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: urlsplit(driver.current_url).path == "/", timeout=30, what="the dashboard")


def save_screenshot(driver: Any) -> int:
    """The dashboard as a PNG in test-artifacts/, and in docs/images when
    UPDATE_DOC_SCREENSHOTS=1 (a test run leaves the checkout clean)."""
    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    out = io.BytesIO()
    img.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    data = out.getvalue()
    assert len(data) < MAX_PNG_BYTES, len(data)
    targets = [ARTIFACTS / SCREENSHOT_DOC.name]
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        targets.append(SCREENSHOT_DOC)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(data)


def test_dashboard_shows_the_display_and_five_clients_beside_them(spawn, tmp_path, chromium):  # noqa: F811
    from selenium.webdriver.common.by import By

    rgb = picture()
    Image.fromarray(rgb, "RGB").save(tmp_path / "pic.png")
    more = ["--admin-max-connections-per-address", "32"]  # three browsers on one address
    (tmp_path / "pw").write_text(PASSWORD)
    server, admin_port = admin_server(
        spawn, tmp_path, "--source", f"image:{tmp_path / 'pic.png'}", "--password-file", str(tmp_path / "pw"), *more
    )
    api = Api(admin_port, TOKEN)
    gtks = []
    for _ in range(2):
        gtks.append(spawn.client("--port", str(server.port), "--password", PASSWORD))
        gtks[-1].wait_event("mark", timeout=60)

    # Three browsers on /watch; the first gives a wrong password before the right one.
    browsers = [chromium() for _ in range(3)]
    open_watch(browsers[0], admin_port, "not-the-password")
    wait_until(lambda: state_of(browsers[0]) == "error", timeout=60, what="the wrong password's error")
    for driver, how in zip(browsers, [{}, {"view_only": True}, {"query": "?via=ws"}], strict=True):
        open_watch(driver, admin_port, PASSWORD, **how)
    framebuffer = as_rgb(server.framebuffer())
    assert np.array_equal(framebuffer, rgb)
    for i, driver in enumerate(browsers):
        wait_canvas_equals(driver, framebuffer, f"the framebuffer in browser {i}")
    wait_match(lambda: framebuffer, gtks, "the framebuffer", timeout=60)

    # The dashboard, in a second window of the first browser (its watch page stays open).
    dash = browsers[0]
    watch_window = dash.current_window_handle
    dash.switch_to.new_window("window")
    dash.set_window_size(1400, 1150)
    login(dash, admin_port)

    def rows(n: int) -> list[dict[str, Any]] | None:
        got = dash.execute_script(ROWS)
        return got if len(got) == n else None

    live = wait_until(lambda: rows(5), timeout=60, what="five clients on the dashboard")
    assert sorted(r["kind"] for r in live) == ["spice-gtk"] * 2 + ["spice-html5"] * 3
    # The kinds are the server's (from the caps), and the browsers' are the WebSocket ones.
    by_id = {c["id"]: c for c in api.ok("GET", "/api/clients")}
    assert {r["id"] for r in live} == set(by_id)
    for r in live:
        assert by_id[r["id"]]["kind"] == r["kind"]
        assert by_id[r["id"]]["websocket"] is (r["kind"] == "spice-html5")
        assert r["codec"] != "" and r["mode"].startswith(("lossless", "lossy"))
    assert dash.find_element(By.ID, "client-count").text == "5"

    # Charts fill in: every client's bandwidth and RTT charts get points, a line each.
    wait_until(
        lambda: (got := rows(5)) and all(r["bandwidth"] >= 3 and r["rtt"] >= 1 and r["line"] for r in got),
        timeout=60,
        what="points in every client's charts",
    )

    # The thumbnail is the display.
    src = wait_thumbnail_shows(dash, framebuffer, "the thumbnail showing the framebuffer")

    # Events: each session's start, the failed ticket.
    def events(kind: str) -> list[str]:
        return [text for ev, text in dash.execute_script(EVENTS) if ev == kind]

    wait_until(lambda: len(events("session_start")) == 5, timeout=30, what="five session starts")
    failed = events("auth_failure")
    assert len(failed) == 1 and "failed ticket from 127.0.0.1" in failed[0] and "wrong or expired ticket" in failed[0]

    # The display changes: all five clients and the thumbnail follow.
    block = np.zeros((100, 160, 4), dtype=np.uint8)
    block[..., 1] = 230
    server.paste(block, 60, 40)
    server.command("updates 20", "updates", timeout=60)
    framebuffer = as_rgb(server.framebuffer())
    wait_thumbnail_shows(dash, framebuffer, "the thumbnail after the display changed", not_src=src)
    for i, driver in enumerate(browsers):
        if i == 0:
            driver.switch_to.window(watch_window)
        wait_canvas_equals(driver, framebuffer, f"the changed framebuffer in browser {i}")
        if i == 0:
            driver.switch_to.window(next(h for h in driver.window_handles if h != watch_window))
    wait_match(lambda: framebuffer, gtks, "the changed framebuffer", timeout=60)

    # A spice-gtk client disconnected from its row: it sees its main channel close, and the
    # events list says who did it; a browser leaving shows as a disconnect with its reason.
    from selenium.common.exceptions import StaleElementReferenceException

    victim = next(r["id"] for r in live if r["kind"] == "spice-gtk")

    def click() -> bool:
        try:
            dash.find_element(By.CSS_SELECTOR, f'#clients tbody tr[data-id="{victim}"] button.disconnect').click()
        except StaleElementReferenceException:
            return False
        return True

    wait_until(click, timeout=30, what="the Disconnect button")
    wait_until(
        lambda: sorted("closed" in g.channel_events("main") for g in gtks) == [False, True],
        timeout=60,
        what="one spice-gtk's main channel closed",
    )
    ended = wait_until(lambda: events("session_end"), timeout=30, what="the disconnect among the events")
    assert ended[0].endswith(f"client {victim:#x} disconnected: disconnected by admin session 1 from 127.0.0.1")
    admin = events("admin")
    assert any(f"admin: disconnect {victim:#x} by admin session 1 from 127.0.0.1" in t for t in admin), admin

    browsers[2].get("about:blank")  # the /ws watcher leaves
    wait_until(lambda: len(events("session_end")) == 2, timeout=60, what="the browser's disconnect")
    assert events("session_end")[0].endswith("disconnected: its main channel closed")
    three = wait_until(lambda: rows(3), timeout=60, what="three clients left")
    assert sorted(r["kind"] for r in three) == ["spice-gtk", "spice-html5", "spice-html5"]
    assert all(r["bandwidth"] >= 3 for r in three)
    dash.execute_script("window.scrollTo(0, 0);")
    assert save_screenshot(dash) > 20_000


VIDEO_CELLS = """
return [document.getElementById('streams').textContent,
        Array.from(document.querySelectorAll('#clients tbody tr td.video')).map(td => td.textContent)];
"""


def test_dashboard_shows_the_video_a_client_plays(spawn, tmp_path, tap_for, chromium):  # noqa: F811
    """The demo's video to a tapped spice-gtk client: the dashboard's streams line names the
    stream, its size and its tier, and the client's video cell counts the frames its wire
    carried (at least those seen before, exactly those once the video stopped)."""
    server, admin_port = admin_server(spawn, tmp_path)
    tap, client = tap_for(server)
    client.wait_event("mark", timeout=60)
    conn = tap.display()

    def on_wire() -> int:
        return sum(t == MsgDisplay.STREAM_DATA for t, _ in conn.snapshot())

    dash = chromium()
    login(dash, admin_port)
    wait_until(lambda: dash.execute_script(VIDEO_CELLS)[1] == ["-"], timeout=30, what="the video cell '-' before the video")
    server.command("video on", "video")
    conn.wait_for(lambda k: on_wire() >= 10, 30, "10 frames on the wire")
    seen = on_wire()

    def shown(pattern: str) -> tuple[str, int] | None:
        line, cells = dash.execute_script(VIDEO_CELLS)
        m = re.fullmatch(pattern, cells[0]) if len(cells) == 1 else None
        return (line, int(m.group(1))) if m else None

    line, n = wait_until(
        lambda: (got := shown(r"mjpeg full, (\d+) frames")) and got[1] >= seen and got, timeout=30, what="the frames in the video cell"
    )
    assert re.fullmatch(rf"1 video {VIDEO.width}x{VIDEO.height} at \d+ fps: mjpeg x1", line), line
    server.command("video off", "video")
    wait_until(
        lambda: (got := shown(r"none now, (\d+) frames")) and got[1] == on_wire() and got[0] == "no video streams",
        timeout=30,
        what="the video cell's count == the STREAM_DATA on the wire, and no streams",
    )
