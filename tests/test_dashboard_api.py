"""The live dashboard's data (issue 19, item 5) against a real server and real clients, without
a browser: /api/dashboard's client kinds, history samples and events, and /api/thumbnail.jpg,
made once for every viewer and showing the server's framebuffer. The browser side is in
test_dashboard_browser.py."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from support.admin import TOKEN, Api, write_token
from support.processes import as_rgb, free_port, wait_until
from support.rawclient import link
from test_ryll_client import ryll  # noqa: F401 (a fixture)

from spice_twisted.sources.demo_video import VIDEO
from spice_twisted.wire.enums import LinkError, MsgDisplay

PASSWORD = "dash-pass"


def picture(width: int = 480, height: int = 320) -> np.ndarray:
    """Large blocks and a gradient: a picture whose thumbnail is recognisable, unlike noise."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x // 60 + y // 40) % 2) * 200 + 30], axis=-1).astype(np.uint8)
    rgb[40:140, 60:220] = (250, 20, 20)
    rgb[180:300, 300:460] = (20, 20, 250)
    return rgb


def scaled(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.BOX), dtype=np.int16)


def fetch(port: int, path: str, token: str | None = TOKEN, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={**(headers or {})})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def server_with_admin(spawn: Any, tmp_path: Path, *args: str) -> tuple[Any, int]:
    write_token(tmp_path / "admin-token", TOKEN)
    (tmp_path / "pw").write_text(PASSWORD)
    port = free_port()
    srv = spawn.harness(
        "--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), "--password-file", str(tmp_path / "pw"), *args
    )
    return srv, port


def test_dashboard_json_kinds_history_and_events(spawn, tmp_path):
    """Two spice-gtk clients and a raw client of our own: kinds spice-gtk, spice-gtk, other; each
    client's samples come every second and `since` returns only newer ones; the events hold
    both sessions' starts, a failed ticket and the admin's disconnect with its reason."""
    Image.fromarray(picture(), "RGB").save(tmp_path / "pic.png")
    srv, port = server_with_admin(spawn, tmp_path, "--source", f"image:{tmp_path / 'pic.png'}")
    api = Api(port, TOKEN)
    gtks = []
    for _ in range(2):
        gtks.append(spawn.client("--port", str(srv.port), "--password", PASSWORD))
        gtks[-1].wait_event("mark", timeout=60)
    sock, result = link(srv.port, PASSWORD.encode())  # a main channel of our own, with no caps at all
    assert result == LinkError.OK
    bad, result = link(srv.port, b"not-the-password")
    assert result == LinkError.PERMISSION_DENIED
    bad.close()

    d = wait_until(lambda: (d := api.ok("GET", "/api/dashboard")) and len(d["clients"]) == 3 and d, timeout=30, what="three clients")
    kinds = {c["id"]: c["kind"] for c in d["clients"]}
    assert sorted(kinds.values()) == ["other", "spice-gtk", "spice-gtk"]
    assert all(c["websocket"] is False for c in d["clients"])
    assert [c["kind"] for c in api.ok("GET", "/api/clients")] == [kinds[c["id"]] for c in d["clients"]]

    # Samples: one a second per client, in order; `since` gives only the newer ones.
    def samples() -> dict[str, Any] | None:
        h = api.ok("GET", "/api/dashboard")["history"]
        return h if len(h["clients"]) == 3 and all(len(rows) >= 3 for rows in h["clients"].values()) else None

    h = wait_until(samples, timeout=30, what="three samples per client")
    assert h["fields"] == ["seq", "time", "bytes_per_second", "rtt_ms", "pipe_bytes", "coalesced"]
    assert set(h["clients"]) == {str(i) for i in kinds}
    for rows in h["clients"].values():
        seqs = [r[0] for r in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(0.5 < b[1] - a[1] < 5 for a, b in zip(rows, rows[1:], strict=False))
    gtk_ids = [str(i) for i, k in kinds.items() if k == "spice-gtk"]
    # spice-gtk clients were sent the picture: some second shows bytes sent.
    wait_until(
        lambda: all(any(r[2] > 0 for r in api.ok("GET", "/api/dashboard")["history"]["clients"][i]) for i in gtk_ids),
        timeout=30,
        what="a send rate in each spice-gtk client's samples",
    )
    later = api.ok("GET", f"/api/dashboard?since={h['seq']}")["history"]
    assert all(r[0] > h["seq"] for rows in later["clients"].values() for r in rows)

    # Events: the sessions, the failed ticket; then the admin's disconnect with its reason.
    events = api.ok("GET", "/api/dashboard")["events"]
    starts = [e for e in events["items"] if e["event"] == "session_start"]
    assert {e["session"] for e in starts} == {f"{i:#x}" for i in kinds}
    failures = [e for e in events["items"] if e["event"] == "auth_failure"]
    assert failures and failures[0]["reason"] == "wrong or expired ticket" and failures[0]["peer"].startswith("127.0.0.1:")
    assert not [e for e in events["items"] if e["event"] in ("connect", "disconnect")]  # per channel: the file only
    victim = next(i for i, k in kinds.items() if k == "spice-gtk")
    api.ok("POST", f"/api/clients/{victim}/disconnect")
    newer = wait_until(
        lambda: [
            e for e in api.ok("GET", f"/api/dashboard?events_since={events['seq']}")["events"]["items"] if e["event"] == "session_end"
        ],
        timeout=30,
        what="the disconnect among the events",
    )
    assert newer[0]["session"] == f"{victim:#x}" and newer[0]["reason"].startswith("disconnected by the admin API token from 127.0.0.1")
    admin = [e for e in api.ok("GET", f"/api/dashboard?events_since={events['seq']}")["events"]["items"] if e["event"] == "admin"]
    assert admin and admin[0]["action"] == "disconnect" and admin[0]["session"] == f"{victim:#x}"
    sock.close()

    # Bad numbers are refused; no token, no data.
    for q in ("since=-1", "since=x", "events_since=1e3", f"since={2**53}"):
        status, body = api.call("GET", f"/api/dashboard?{q}")
        assert status == 400 and "whole number" in body["error"], (q, status, body)
    assert api.call("GET", "/api/dashboard", token=None)[0] == 401
    assert fetch(port, "/api/thumbnail.jpg", token=None)[0] == 401


def test_thumbnail_is_one_encode_for_every_viewer_and_shows_the_display(spawn, tmp_path):
    rgb = picture()
    Image.fromarray(rgb, "RGB").save(tmp_path / "pic.png")
    srv, port = server_with_admin(spawn, tmp_path, "--source", f"image:{tmp_path / 'pic.png'}")
    api = Api(port, TOKEN)
    assert api.ok("GET", "/api/dashboard")["thumbnail"]["encodes"] == 0  # nobody looked: nothing made

    # Twelve viewers at once: the same bytes, from one encode.
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda _: fetch(port, "/api/thumbnail.jpg"), range(12)))
    assert {status for status, _, _ in got} == {200}
    assert len({body for _, _, body in got}) == 1 and len({h["ETag"] for _, h, _ in got}) == 1
    status, headers, jpeg = got[0]
    assert headers["Content-Type"] == "image/jpeg"
    assert api.ok("GET", "/api/dashboard")["thumbnail"]["encodes"] == 1
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (400, 267)  # 480x320 fitted into 400x300
    shown = np.asarray(img.convert("RGB"), dtype=np.int16)
    expect = scaled(as_rgb(srv.framebuffer()), img.size)
    assert np.abs(shown - expect).mean() < 6, np.abs(shown - expect).mean()
    assert np.abs(shown - scaled(rgb[::-1].copy(), img.size)).mean() > 30  # a wrong picture is far off

    # Nothing changes on the display: asked again later, the same picture and no new encode;
    # with its ETag, a 304.
    time.sleep(1.2)
    status, headers2, again = fetch(port, "/api/thumbnail.jpg")
    assert again == jpeg and headers2["ETag"] == headers["ETag"]
    assert fetch(port, "/api/thumbnail.jpg", headers={"If-None-Match": headers["ETag"]})[0] == 304
    assert api.ok("GET", "/api/dashboard")["thumbnail"]["encodes"] == 1

    # The display changes: the dashboard's address for the picture changes, and the new
    # picture shows the change (a green block where the red one was).
    url = api.ok("GET", "/api/dashboard")["thumbnail"]["url"]
    block = np.zeros((100, 160, 4), dtype=np.uint8)
    block[..., 1] = 230  # B, G, R, X: green
    srv.paste(block, 60, 40)
    wait_until(lambda: api.ok("GET", "/api/dashboard")["thumbnail"]["url"] != url, timeout=30, what="a new thumbnail address")

    def new_picture() -> list[np.ndarray] | None:
        status, h, data = fetch(port, "/api/thumbnail.jpg")
        return [np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)] if h["ETag"] != headers["ETag"] else None

    (shown,) = wait_until(new_picture, timeout=30, what="a new thumbnail")
    expect = scaled(as_rgb(srv.framebuffer()), img.size)
    assert np.abs(shown - expect).mean() < 6
    centre = shown[50:100, 80:160].reshape(-1, 3).mean(axis=0)  # the block, in thumbnail pixels
    assert centre[1] > 180 and centre[0] < 60, centre
    assert api.ok("GET", "/api/dashboard")["thumbnail"]["encodes"] == 2


def test_ryll_is_neither_spice_gtk_nor_spice_html5(spawn, tmp_path, ryll):  # noqa: F811
    """ryll sends spice-gtk's main caps but also PREF_COMPRESSION on its display channel (a
    server cap spice-gtk never sends): its kind is "other", in the API and in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    srv, port = server_with_admin(spawn, tmp_path)
    api = Api(port, TOKEN)
    gtk = spawn.client("--port", str(srv.port), "--password", PASSWORD)
    gtk.wait_event("mark", timeout=60)
    api.ok("POST", "/api/ticket", {"password": None})  # ryll links without a ticket
    ryll(srv.port)

    def kinds() -> list[str] | None:
        clients = api.ok("GET", "/api/clients")
        ready = len(clients) == 2 and all(any(ch["channel"] == "display" for ch in c["channels"]) for c in clients)
        return [c["kind"] for c in clients] if ready else None

    assert wait_until(kinds, timeout=60, what="ryll's display channel") == ["spice-gtk", "other"]
    status, _, text = fetch(port, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    assert {s.labels["kind"]: s.value for s in families["spice_clients_by_kind"].samples} == {"spice-gtk": 1, "spice-html5": 0, "other": 1}
    assert sorted(s.labels["kind"] for s in families["spice_client_info"].samples) == ["other", "spice-gtk"]


def test_recent_events_are_bounded_filtered_and_leave_with_their_owner():
    """In process, on a log publisher of its own: the per-channel audit lines are left out,
    at most `keep` events are kept, `since` returns the newer ones, and a dropped
    RecentEvents takes its observer off the publisher."""
    import gc

    from twisted.logger import LogPublisher

    from admin_ui.events import RecentEvents
    from spice_twisted.audit import NAMESPACE

    pub = LogPublisher()

    def emit(event: str, **fields: Any) -> None:
        pub({"log_namespace": NAMESPACE, "log_time": time.time(), "audit_event": event, "audit_fields": fields})

    later: list[Any] = []
    tail = RecentEvents(keep=5, publisher=pub, later=lambda fn, *args: later.append((fn, args)))
    others: list[dict] = []
    pub.addObserver(others.append)  # an observer after it misses nothing
    emit("connect", peer="127.0.0.1:1")  # per channel: not shown
    emit("link", peer="127.0.0.1:1", result="OK")
    emit("disconnect", peer="127.0.0.1:1", reason="x")
    pub({"log_namespace": "other", "log_format": "not audit"})
    assert tail.since(0) == [] and tail.seq == 0
    emit("link", peer="127.0.0.1:2", result="PERMISSION_DENIED", reason="wrong or expired ticket")
    for i in range(7):
        emit("session_start", session=f"{i:#x}", peer="127.0.0.1:3")
    got = tail.since(0)
    assert [e["seq"] for e in got] == [4, 5, 6, 7, 8] and tail.seq == 8
    assert [e["session"] for e in got] == ["0x2", "0x3", "0x4", "0x5", "0x6"]
    assert [e["seq"] for e in tail.since(6)] == [7, 8]
    assert got[-1]["event"] == "session_start" and got[-1]["time"].endswith("Z")

    del tail, got
    gc.collect()
    emit("session_start", session="0x9", peer="127.0.0.1:3")  # the observer finds its owner gone
    emit("session_start", session="0xa", peer="127.0.0.1:3")
    assert len(later) == 1 and [e["audit_fields"].get("session") for e in others[-2:]] == ["0x9", "0xa"]
    fn, args = later[0]
    fn(*args)  # the next reactor turn: off the publisher
    assert pub._observers == [others.append]


def _json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable` becomes a "null" type."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def conforms(instance: Any, name: str) -> None:
    """`instance` matches components.schemas[name] of the API's own OpenAPI document."""
    import jsonschema_rs

    from admin_ui.openapi import openapi_document

    root = {"$ref": f"#/components/schemas/{name}", "components": _json_schema(openapi_document()["components"])}
    jsonschema_rs.validator_for(root).validate(instance)


def test_video_column_streams_and_metrics_against_the_wire(spawn, tap_for, tmp_path):
    """The demo's video plays to a LAN client and to one on a shaped 2 Mbit/s, 50 ms link
    (judged WAN: the low tier). The API says which tier each is on, names both tiers on the
    active stream, and counts each client's frames as its tap saw them: at least the wire's
    count while it plays, exactly once it stopped; /metrics says the same."""
    from test_metrics import METRICS_TOKEN, samples, scrape, value

    write_token(tmp_path / "metrics-token", METRICS_TOKEN)
    srv, port = server_with_admin(spawn, tmp_path, "--metrics-token-file", str(tmp_path / "metrics-token"))
    api = Api(port, TOKEN)
    slow_tap, slow = tap_for(srv, "--password", PASSWORD)
    slow_tap.shape(rate=250_000, delay=0.05)
    fast_tap, fast = tap_for(srv, "--password", PASSWORD)
    for c in (slow, fast):
        c.wait_event("mark", timeout=60)
    conns = {"slow": slow_tap.display(), "fast": fast_tap.display()}
    ids = {k: c.connection_id for k, c in conns.items()}
    wait_until(lambda: sum(c["link"]["wan"] for c in api.ok("GET", "/api/clients")) == 1, 30, "the slow client judged WAN")
    assert all(c["video"] == {**c["video"], "playing": 0, "tier": None, "frames_sent": 0} for c in api.ok("GET", "/api/clients"))

    def frames(k: str) -> int:
        return sum(t == MsgDisplay.STREAM_DATA for t, _ in conns[k].snapshot())

    srv.command("video on", "video")
    for k in conns:
        conns[k].wait_for(lambda c: sum(t == MsgDisplay.STREAM_DATA for t, _ in c.snapshot()) >= 10, 30, f"10 frames to the {k} client")
    on_wire = {k: frames(k) for k in conns}  # read before the API: the server wrote at least these
    clients = {c["id"]: c for c in api.ok("GET", "/api/clients")}
    got = samples(scrape(port, METRICS_TOKEN)[1])
    for k, cid in ids.items():
        v = clients[cid]["video"]
        conforms(v, "ClientVideo")
        assert v["playing"] == 1 and v["codecs"] == ["mjpeg"] and v["frames_sent"] >= on_wire[k], (k, v, on_wire)
        assert value(got, "spice_client_video_frames_sent_total", client=f"{cid:#x}") >= on_wire[k]
    assert clients[ids["fast"]]["video"]["tier"] == "full" and clients[ids["fast"]]["video"]["tiers"] == ["mjpeg"]
    assert clients[ids["slow"]]["video"]["tier"] == "low" and clients[ids["slow"]]["video"]["tiers"] == ["mjpeg_low"]
    streams = api.ok("GET", "/api/server")["render"]["streams"]
    conforms(streams, "Streams")
    (active,) = streams["active"]
    assert active["tiers"] == {"mjpeg": 1, "mjpeg_low": 1} and (active["width"], active["height"]) == (VIDEO.width, VIDEO.height)
    assert active["fps"] > 0 and streams["tier_frames"]["mjpeg_low"] >= on_wire["slow"]
    assert value(got, "spice_video_streams") == 1
    assert value(got, "spice_video_frames_total", tier="mjpeg") >= on_wire["fast"]

    # The video stops: the stream ends, and each client's count is what its wire carried.
    srv.command("video off", "video")
    wait_until(
        lambda: all(c["video"]["playing"] == 0 and c["video"]["frames_sent"] == frames(k) for k, c in _by_kind(api, ids).items()),
        30,
        "frames_sent == the STREAM_DATA on each wire",
    )
    assert value(samples(scrape(port, METRICS_TOKEN)[1]), "spice_video_streams") == 0


def _by_kind(api: Api, ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    clients = {c["id"]: c for c in api.ok("GET", "/api/clients")}
    return {k: clients[cid] for k, cid in ids.items()}


def test_video_stats_name_a_stateful_codecs_low_tier():
    """In process, H.264 to a LAN client and two WAN ones: a client's `video` says its tier
    (`full`, `low`) and tier codec (h264, h264_low) and counts the STREAM_DATA its wire
    carried; the active stream counts the clients on each tier codec."""
    from support.inprocess import Reader, make_server, noise, open_display
    from test_streams import _frame_data, _play

    from spice_twisted.stats import stream_stats, video_stats
    from spice_twisted.wire.enums import DisplayCap

    srv = make_server()
    srv.display_settings.video_codecs = ("h264", "mjpeg")
    noise(srv)
    caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_H264}
    lan, wan, wan2 = everyone = [Reader(*open_display(srv, caps)) for _ in range(3)]
    for r in (wan, wan2):
        r.cc.client.link.is_wan = True
    for r in everyone:
        r.catch_up(srv)
    _play(srv, everyone, 8)
    for r, tier, tier_codec in ((lan, "full", "h264"), (wan, "low", "h264_low"), (wan2, "low", "h264_low")):
        v = video_stats(r.cc.client)
        conforms(v, "ClientVideo")
        assert (v["playing"], v["codecs"], v["tier"], v["tiers"]) == (1, ["h264"], tier, [tier_codec])
        assert v["frames_sent"] == len(_frame_data(r)) > 0
    (active,) = stream_stats(srv)["active"]
    assert active["tiers"] == {"h264": 1, "h264_low": 2}
