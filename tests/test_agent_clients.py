"""The built-in agent with real spice-gtk clients on the demo: clipboard both ways and between
clients, the primary's resize followed by every client, view-only limits, file transfer,
and the audit log (sizes and names, never contents)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.agent_demo import paste, press_ctrl, shows_text_line
from support.processes import as_rgb, connect_clients, free_port, wait_match, wait_until
from twisted.python import usage

from spice_twisted.agent_policy import ClipboardMode
from spice_twisted.options import Options
from spice_twisted.wire.enums import AgentCap


def sids(server) -> list[int]:
    """Session ids in order of seniority (the first is the primary)."""
    return [c["id"] for c in server.stats()["clients"]]


def events(client, name: str) -> list[dict]:
    return [e for e in client.events if e.get("event") == name]


def send_file(client, path: Path) -> tuple[dict, dict]:
    """file_copy_async of one file: (its file-task event, the operation's file-done)."""
    start = len(client.events)
    client.command(f"send_file {path}", "send_file")
    done = client.wait_for(lambda e: e.get("event") == "file-done", timeout=60, start=start)
    task = client.wait_for(lambda e: e.get("event") == "file-task", timeout=10, start=start)
    return task, done


def audit_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_viewers_see_the_agent_and_its_caps(spawn):
    """remote-viewer's "agent: yes" is spice-gtk's agent-connected; the caps are only what
    the demo can do (clipboard, resize) and say file transfer is off without a directory."""
    server = spawn.harness()
    (a,) = connect_clients(spawn, server, 1)
    a.wait_event("agent", connected=True)
    caps = wait_until(lambda: a.command("agent", "agent")["caps0"], what="the agent's caps")
    want = {
        AgentCap.REPLY,
        AgentCap.CLIPBOARD_BY_DEMAND,
        AgentCap.CLIPBOARD_SELECTION,
        AgentCap.MONITORS_CONFIG,
        AgentCap.FILE_XFER_DISABLED,
    }
    assert {c for c in range(32) if caps >> c & 1} == {int(c) for c in want} | {AgentCap.FILE_XFER_DETAILED_ERRORS}


def test_text_from_one_client_reaches_the_demo_and_the_other_client(spawn, tmp_path):
    audit = tmp_path / "audit.jsonl"
    server = spawn.harness("--audit-log", str(audit), paused=True)
    a, b = connect_clients(spawn, server, 2)
    secret = "pasted from A: 7 tomatoes"
    a.command(f"clip_copy 0 {secret}", "clip_copy")
    # The server asked A for the text at once (eager) and offers it to B, who pastes it.
    a.wait_event("clip-request", sel=0, type=1, answered=True)
    assert paste(b) == secret
    assert not events(a, "clip-grab"), "A's own copy is not offered back to A"
    # The demo's clipboard holds it: Ctrl+V in B types it into the demo's text line, which
    # both clients then show.
    press_ctrl(b, 0x2F)
    for c in (a, b):
        wait_until(lambda c=c: shows_text_line(c.framebuffer(), secret), timeout=20, what="the pasted text on the demo's text line")
    # A PRIMARY selection travels the same way.
    a.command("clip_copy 1 primary words", "clip_copy")
    assert paste(b, sel=1) == "primary words"
    # The audit log has who, sizes and types, never the text.
    wait_until(lambda: audit.exists() and sum(r["event"] == "clipboard" for r in audit_records(audit)) >= 4, what="audit lines")
    recs = [r for r in audit_records(audit) if r["event"] == "clipboard"]
    ins = [r for r in recs if r["direction"] == "in"]
    outs = [r for r in recs if r["direction"] == "out"]
    sa, sb = sids(server)
    assert ins[0]["session"] == f"{sa:#x}" and ins[0]["bytes"] == len(secret) and ins[0]["types"] == ["text/plain;charset=utf-8"]
    assert outs[0]["session"] == f"{sb:#x}" and outs[0]["origin"] == f"{sa:#x}"
    assert "tomatoes" not in audit.read_text()


def test_the_demo_log_reaches_two_clients(spawn):
    server = spawn.harness(paused=True)
    a, b = connect_clients(spawn, server, 2)
    press_ctrl(b, 0x2E)  # Ctrl+C on the demo copies its log
    got_a, got_b = paste(a), paste(b)
    assert got_a == got_b
    assert "log: a line a second, and each typed line" in got_a
    assert f"client {sids(server)[1]:#x} copied the log" in got_a


def test_a_resize_by_the_primary_reaches_every_client_and_others_cannot(spawn):
    server = spawn.harness(paused=True)
    a, b = connect_clients(spawn, server, 2)
    sa, sb = sids(server)
    a.command("monitor 800 600", "monitor")
    for c in (a, b):
        c.wait_for(lambda e: e.get("event") == "primary-create" and (e["width"], e["height"]) == (800, 600), timeout=30)
    fb = wait_match(lambda: as_rgb(server.framebuffer()), [a, b], "the server's 800x600 framebuffer")
    assert fb.shape[:2] == (600, 800)
    # B is not the primary: its size is refused (the REPLY says error) and nothing changes.
    b.command("monitor 1100 700", "monitor")
    wait_until(lambda: server.stats()["agent"]["refused"].get("resize") == 1, what="B's resize refused")
    assert server.stats()["width"] == 800
    # The admin hands control to B: now its size goes.
    server.command(f"primary {sb}", "primary")
    b.command("monitor 1100 700", "monitor")
    for c in (a, b):
        c.wait_for(lambda e: e.get("event") == "primary-create" and (e["width"], e["height"]) == (1100, 700), timeout=30)
    fb = wait_match(lambda: as_rgb(server.framebuffer()), [a, b], "the server's 1100x700 framebuffer")
    assert fb.shape[:2] == (700, 1100)
    assert server.stats()["agent"]["resizes"] == 2


def test_a_view_only_client_may_copy_out_but_not_paste_or_resize(spawn):
    server = spawn.harness(paused=True)
    a, b = connect_clients(spawn, server, 2)
    sa, sb = sids(server)
    server.view_only(sa, True)  # the primary itself, to show view-only wins over seniority
    a.command("clip_copy 0 from the watcher", "clip_copy")
    a.command("monitor 700 500", "monitor")
    wait_until(lambda: server.stats()["agent"]["refused"] == {"paste": 1, "resize": 1}, what="both refused")
    assert not events(a, "clip-request"), "the server never asked a view-only client for its copy"
    assert not events(b, "clip-grab")
    assert (server.stats()["width"], server.stats()["height"]) == (1024, 768)
    assert a.framebuffer().shape[:2] == (768, 1024)
    # ... but it may copy out: B's copy reaches it.
    b.command("clip_copy 0 for everyone", "clip_copy")
    assert paste(a) == "for everyone"


def test_clipboard_none_offers_nothing(spawn):
    server = spawn.harness("--clipboard", "none", paused=True)
    (a,) = connect_clients(spawn, server, 1)
    caps = wait_until(lambda: a.command("agent", "agent")["caps0"], what="the agent's caps")
    assert not caps >> AgentCap.CLIPBOARD_BY_DEMAND & 1
    assert caps >> AgentCap.MONITORS_CONFIG & 1


def test_files_land_in_the_directory_bounded_and_never_overwritten(spawn, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    audit = tmp_path / "audit.jsonl"
    server = spawn.harness("--file-xfer-dir", str(drop), "--file-xfer-max-size", "1M", "--audit-log", str(audit), paused=True)
    a, b = connect_clients(spawn, server, 2)
    src = tmp_path / "out"
    src.mkdir()
    payload = os.urandom(300_000)
    (src / "notes.txt").write_bytes(payload)
    for _ in range(2):
        task, done = send_file(a, src / "notes.txt")
        assert done["ok"] and task["error"] is None, (task, done)
    assert (drop / "notes.txt").read_bytes() == payload
    assert (drop / "notes (1).txt").read_bytes() == payload  # the second did not overwrite
    # Over the cap: refused with the protocol's NOT_ENOUGH_SPACE, nothing written.
    (src / "big.bin").write_bytes(bytes(1_100_000))
    task, done = send_file(a, src / "big.bin")
    assert not done["ok"] and "free space" in task["error"], (task, done)
    # A view-only client is refused with DISABLED.
    server.view_only(sids(server)[1], True)
    task, done = send_file(b, src / "notes.txt")
    assert not done["ok"] and "disabled" in task["error"].lower(), (task, done)
    assert sorted(p.name for p in drop.iterdir()) == ["notes (1).txt", "notes.txt"]  # no part files left
    wait_until(lambda: sum(r["event"] == "file_received" for r in audit_records(audit)) == 2, what="audit lines")
    recs = [r for r in audit_records(audit) if r["event"] == "file_received"]
    assert [(r["name"], r["size"], r["session"]) for r in recs] == [("notes.txt", 300_000, f"{sids(server)[0]:#x}")] * 2
    refused = [r for r in audit_records(audit) if r["event"] == "file_refused"]
    assert {r["status"] for r in refused} == {"not_enough_space", "disabled"}


def test_file_transfer_is_off_by_default(spawn, tmp_path):
    server = spawn.harness(paused=True)
    (a,) = connect_clients(spawn, server, 1)
    wait_until(lambda: a.command("agent", "agent")["caps0"], what="the agent's caps")
    f = tmp_path / "x.txt"
    f.write_bytes(b"hello")
    task, done = send_file(a, f)
    assert not done["ok"] and "disabled" in task["error"].lower(), (task, done)


def test_the_admin_hands_control_and_sees_the_policy(admin):
    srv, api, (a, b) = admin
    ids = [c["id"] for c in api.ok("GET", "/api/clients")]
    policy = api.ok("GET", "/api/server")["agent"]["policy"]
    assert policy["resize"].startswith("primary") and (policy["clipboard_drivers"], policy["clipboard_view_only"]) == ("both", "copy-out")
    wait_until(lambda: all(c["agent"]["started"] for c in api.ok("GET", "/api/clients")), what="both agents started")
    # Hand control to the second client: its window size goes, the first one's no longer.
    assert api.ok("POST", f"/api/clients/{ids[1]}/primary")["primary"] is True
    assert [c["id"] for c in api.ok("GET", "/api/clients") if c["primary"]] == [ids[1]]
    a.command("monitor 900 640", "monitor")
    wait_until(lambda: api.ok("GET", "/api/server")["agent"]["refused"].get("resize") == 1, what="the old primary refused")
    b.command("monitor 860 620", "monitor")
    for c in (a, b):
        c.wait_for(lambda e: e.get("event") == "primary-create" and (e["width"], e["height"]) == (860, 620), timeout=30)
    assert api.ok("PATCH", f"/api/clients/{ids[0]}", {"view_only": True})["agent"]["clipboard"] == "copy-out"
    assert api.call("POST", "/api/clients/1/primary")[0] == 404  # no such client
    # The dashboard's Server box shows the policy (the template with the real /api/server).
    from admin_ui.app import AdminApp

    page = (
        AdminApp(server=None, token="t")
        .env.get_template("dashboard.html")
        .render(server=api.ok("GET", "/api/server"), clients=[], csrf="x")
    )
    assert "resize: primary client only (not when view-only); clipboard: both for drivers, copy-out for view-only; files: off" in page


def test_agent_options(tmp_path):
    def policy(*argv: str):
        o = Options()
        o.parseOptions(["--port", str(free_port()), "--admin-port", "0", *argv])
        return o["agent-policy"]

    assert policy().clipboard == ClipboardMode.BOTH and policy().file_xfer_dir is None
    assert policy("--clipboard", "copy-out").clipboard == ClipboardMode.COPY_OUT
    assert policy("--disable-copy-paste=on").clipboard == ClipboardMode.NONE
    assert policy("--disable-copy-paste=off").clipboard == ClipboardMode.BOTH
    p = policy("--file-xfer-dir", str(tmp_path), "--file-xfer-max-size", "64K")
    assert (p.file_xfer_dir, p.file_xfer_max_size) == (str(tmp_path), 65536)
    assert policy("--file-xfer-dir", str(tmp_path), "--disable-agent-file-xfer").file_xfer_dir is None
    for bad, why in ((["--clipboard", "all"], "none, copy-out or both"), (["--file-xfer-dir", str(tmp_path / "nope")], "not a directory")):
        with pytest.raises(usage.UsageError, match=why):
            policy(*bad)


def test_clients_hear_when_the_desktop_can_do_less_or_more(spawn):
    """A source whose abilities change (a VM's own agent coming and going) calls
    desktop_changed(): spice-gtk gets our capabilities again, or the agent goes
    (AGENT_DISCONNECTED: "agent: no") and comes back (AGENT_CONNECTED_TOKENS)."""
    server = spawn.harness(paused=True)
    (a,) = connect_clients(spawn, server, 1)
    clip = 1 << AgentCap.CLIPBOARD_BY_DEMAND
    wait_until(lambda: a.command("agent", "agent")["caps0"] & clip, what="clipboard caps")
    server.command("desktop_abilities 0 1", "desktop_abilities")  # resize only: caps again
    wait_until(lambda: not a.command("agent", "agent")["caps0"] & clip, what="caps without the clipboard")
    assert a.command("agent", "agent")["caps0"] >> AgentCap.MONITORS_CONFIG & 1
    server.command("desktop_abilities 0 0", "desktop_abilities")  # nothing left: no agent
    a.wait_event("agent", connected=False)
    start = len(a.events)
    server.command("desktop_abilities 1 1", "desktop_abilities")
    a.wait_for(lambda e: e.get("event") == "agent" and e["connected"], start=start)
    wait_until(lambda: a.command("agent", "agent")["caps0"] & clip, what="clipboard caps again")
    a.command("clip_copy 0 back again", "clip_copy")
    a.wait_event("clip-request", sel=0, type=1, answered=True)


def test_a_source_without_agent_abilities_shows_no_agent(spawn, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}", paused=True)
    (a,) = connect_clients(spawn, server, 1)
    assert a.command("agent", "agent")["connected"] is False
    # With --file-xfer-dir the agent is there for files alone.
    server2 = spawn.harness("--source", f"image:{path}", "--file-xfer-dir", str(tmp_path), paused=True)
    (b,) = connect_clients(spawn, server2, 1)
    caps = wait_until(lambda: b.command("agent", "agent")["caps0"], what="caps")
    assert {c for c in range(32) if caps >> c & 1} == {AgentCap.REPLY, AgentCap.FILE_XFER_DETAILED_ERRORS}


def test_clipboard_copy_out_lets_nothing_in(spawn):
    server = spawn.harness("--clipboard", "copy-out", paused=True)
    a, b = connect_clients(spawn, server, 2)
    wait_until(lambda: a.command("agent", "agent")["caps0"], what="caps")
    a.command("clip_copy 0 not for the desktop", "clip_copy")
    wait_until(lambda: server.stats()["agent"]["refused"].get("paste") == 1, what="the paste refused")
    assert not events(a, "clip-request") and not events(b, "clip-grab")
    press_ctrl(b, 0x2E)  # ... but the desktop's own clipboard goes out to both
    assert "copied the log" in paste(a) and "copied the log" in paste(b)
