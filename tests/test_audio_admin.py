"""Sound on the admin site: each client's playback mode, frames sent and dropped, the sound
queued for it and whether it records, in the REST API and the dashboard (real Chromium).

Counts are checked against what the spice-gtk clients themselves received."""

from __future__ import annotations

from pathlib import Path

from support.admin import TOKEN, Api, write_token
from support.processes import free_port, wait_until
from test_admin_browser import _by, _wait, browser, login  # noqa: F401 (browser: a fixture)
from test_audio_clients import write_noise


def test_clients_audio_in_the_api_and_the_dashboard(spawn, tmp_path: Path, browser) -> None:  # noqa: F811
    wav = tmp_path / "noise.wav"
    write_noise(wav, 5)
    write_token(tmp_path / "admin-token", TOKEN)
    port = free_port()
    srv = spawn.server(
        "--disable-ticketing", "--audio-source", str(wav), "--record-to", str(tmp_path / "rec.wav"),
        "--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"),
    )  # fmt: skip
    api = Api(port, TOKEN)
    opus = spawn.client("--port", str(srv.port), "--audio")
    opus.wait_event("record-start", timeout=30)  # the primary: it records
    raw = spawn.client("--port", str(srv.port), "--audio", "--no-opus")
    for c in (opus, raw):
        c.wait_event("playback-start", timeout=30)
    wait_until(lambda: min(c.command("audio", "audio")["frames"] for c in (opus, raw)) >= 100, timeout=60, what="1 s of sound")
    heard = {c: c.command("audio", "audio")["frames"] for c in (opus, raw)}
    rows = {r["id"]: r for r in api.ok("GET", "/api/clients")}
    by_mode = {r["playback"]["mode"]: r for r in rows.values()}
    assert set(by_mode) == {"opus", "raw"}
    for mode, client in (("opus", opus), ("raw", raw)):
        pb = by_mode[mode]["playback"]
        # the server sent at least what the client had heard a moment before, and dropped nothing
        assert pb["frames_sent"] >= heard[client] and pb["frames_dropped"] == 0
        assert 0 <= pb["queued_ms"] <= 200 and pb["latency_ms"] in (None, 100)
    assert by_mode["opus"]["record"]["recording"] is True and by_mode["raw"]["record"]["recording"] is False

    login(browser, port, TOKEN)
    By = _by()
    _wait(lambda: "Audio" in [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#clients thead th")], what="an Audio column")

    def audio_cells() -> dict[int, str]:
        cells = {}
        for tr in browser.find_elements(By.CSS_SELECTOR, "#clients tbody tr"):
            if tr.find_elements(By.CSS_SELECTOR, "button.disconnect"):  # a row dashboard.js drew
                cells[int(tr.get_attribute("data-id"))] = tr.find_element(By.CSS_SELECTOR, "td.audio").text
        return cells

    cells = _wait(lambda: (c := audio_cells()) and len(c) == 2 and c, what="two live rows")
    assert cells[by_mode["opus"]["id"]].startswith("opus: ") and cells[by_mode["opus"]["id"]].endswith("recording")
    assert cells[by_mode["raw"]["id"]].startswith("raw: ") and "recording" not in cells[by_mode["raw"]["id"]]
    assert " dropped, " in cells[by_mode["raw"]["id"]] and " ms queued" in cells[by_mode["raw"]["id"]]
