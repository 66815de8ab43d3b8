"""The built-in agent on the VM source, end to end: a pass-through to the upstream's agent.

The upstream is a second spice-twisted (the demo source), whose built-in agent is a real
agent end (QEMU with spice-vdagent in a guest cannot run here). Our server re-serves it
with `--source spice://`; a real spice-gtk client of ours copies, pastes and resizes; what
the upstream desktop holds is checked at the upstream: a spice-gtk client connected to it
directly pastes it, its text line shows it, its surface has the new size.
"""

from __future__ import annotations

import os
import signal

from support import processes
from support.agent_demo import paste, press_ctrl, shows_text_line
from support.processes import as_rgb, connect_clients, wait_until

from spice_twisted.wire.enums import AgentCap

KEY_C, KEY_V = 0x2E, 0x2F
CLIP = 1 << AgentCap.CLIPBOARD_BY_DEMAND


def chain(spawn, ours: int = 1):
    """(upstream demo, our server in front of it, our clients, a client straight at the upstream)."""
    upstream = spawn.harness(paused=True)
    server = spawn.harness("--source", f"spice://127.0.0.1:{upstream.port}", "--disable-ticketing")
    clients = connect_clients(spawn, server, ours)
    wait_until(lambda: len(upstream.stats()["clients"]) == 1, 30, "our helper linked upstream")
    (direct,) = connect_clients(spawn, upstream, 1)
    return upstream, server, clients, direct


def test_clipboard_and_resize_pass_through_to_an_upstream_with_an_agent(spawn):
    upstream, server, (ours, other), direct = chain(spawn, 2)
    for c in (ours, other):
        c.wait_event("agent", connected=True, timeout=60)
    wait_until(lambda: ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard offered through the VM")

    # Our client copies: the upstream desktop holds it (its own client pastes it, a Ctrl+V
    # from our client types it into the upstream demo's text line, which our client shows).
    secret = "from our client: Grüße ✓"
    mark = len(direct.events)
    ours.command(f"clip_copy 0 {secret}", "clip_copy")
    ours.wait_event("clip-request", sel=0, type=1, answered=True, timeout=30)
    assert paste(direct, start=mark, timeout=40) == secret
    press_ctrl(ours, KEY_V)
    wait_until(lambda: shows_text_line(upstream.framebuffer(), secret), 30, "the text on the upstream demo's line")
    processes.wait_match(lambda: as_rgb(upstream.framebuffer()), [ours, direct], "the upstream's framebuffer", 30)

    # ~150 kB of text crosses both hops (many AGENT_DATA chunks on each).
    big = "0123456789abcdef" * 9_000
    mark = len(direct.events)
    ours.command(f"clip_copy 0 {big}", "clip_copy")
    assert paste(direct, start=mark, timeout=40) == big

    # Ctrl+C from our client copies the upstream demo's log: it reaches both our clients
    # through the VM's agent, the same text the upstream's own client pastes.
    marks = len(ours.events), len(other.events), len(direct.events)
    press_ctrl(ours, KEY_C)
    got_ours = paste(ours, start=marks[0], timeout=40)
    assert "log: a line a second, and each typed line" in got_ours
    assert got_ours == paste(other, start=marks[1], timeout=40) == paste(direct, start=marks[2], timeout=40)

    # Our second client is not the primary: its size goes nowhere.
    other.command("monitor 700 500", "monitor")
    wait_until(lambda: server.stats()["agent"]["refused"].get("resize") == 1, 30, "the second client's resize refused")

    # A resize by our primary resizes the upstream demo; every client follows exactly.
    for w, h in ((900, 640), (1100, 700)):
        assert ours.command(f"monitor {w} {h}", "monitor")["ok"]
        for c in (ours, other, direct):
            c.wait_for(lambda e, w=w, h=h: e.get("event") == "primary-create" and (e["width"], e["height"]) == (w, h), timeout=40)
        fb = processes.wait_match(lambda: as_rgb(upstream.framebuffer()), [ours, other, direct], "the upstream's framebuffer", 30)
        assert fb.shape[:2] == (h, w)


def test_our_clients_see_the_vms_agent_come_and_go(spawn):
    """The VM source tells our clients when the upstream's agent changes (desktop_changed):
    its agent gone, spice-gtk shows "agent: no"; back, "agent: yes" with the clipboard."""
    upstream, server, (ours,), _direct = chain(spawn)
    ours.wait_event("agent", connected=True, timeout=60)
    wait_until(lambda: ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard offered")
    upstream.command("desktop_abilities 0 1", "desktop_abilities")  # resize only upstream
    wait_until(lambda: not ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard withdrawn")
    assert ours.command("agent", "agent")["caps0"] >> AgentCap.MONITORS_CONFIG & 1
    mark = len(ours.events)
    upstream.command("desktop_abilities 0 0", "desktop_abilities")  # the upstream's agent goes
    ours.wait_for(lambda e: e.get("event") == "agent" and not e["connected"], timeout=30, start=mark)
    mark = len(ours.events)
    upstream.command("desktop_abilities 1 1", "desktop_abilities")
    ours.wait_for(lambda e: e.get("event") == "agent" and e["connected"], timeout=30, start=mark)
    wait_until(lambda: ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard offered again")


def test_an_upstream_without_an_agent_shows_no_agent(spawn, random_image):
    path, _ = random_image
    upstream = spawn.harness("--source", f"image:{path}", paused=True)
    server = spawn.harness("--source", f"spice://127.0.0.1:{upstream.port}", "--disable-ticketing")
    (ours,) = connect_clients(spawn, server, 1)
    shot = processes.wait_match(lambda: as_rgb(upstream.framebuffer()), [ours], "the upstream's picture", 30)
    assert ours.command("agent", "agent")["connected"] is False
    assert not [e for e in ours.events if e.get("event") == "agent" and e["connected"]]
    # spice-gtk itself refuses to send a monitor config with no agent there
    assert ours.command("monitor 900 640", "monitor")["ok"] is False
    assert upstream.framebuffer().shape[:2] == shot.shape[:2] == ours.framebuffer().shape[:2]


def test_the_agent_goes_with_the_vm_and_comes_back_with_it(spawn):
    """The upstream itself goes (the VM stops): our clients see "agent: no", not an agent
    that still offers a clipboard and a resize nobody takes; a new upstream on the same
    port brings the agent back, and a copy of ours reaches it."""
    upstream, server, (ours,), _direct = chain(spawn)
    ours.wait_event("agent", connected=True, timeout=60)
    wait_until(lambda: ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard offered")
    port = upstream.port
    mark = len(ours.events)
    upstream.proc.kill()
    upstream.proc.wait(10)
    ours.wait_for(lambda e: e.get("event") == "agent" and not e["connected"], timeout=30, start=mark)
    again = spawn.harness("--port", str(port), paused=True)
    again.port = port
    mark = len(ours.events)
    ours.wait_for(lambda e: e.get("event") == "agent" and e["connected"], timeout=60, start=mark)
    wait_until(lambda: ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard offered again")
    wait_until(lambda: len(again.stats()["clients"]) == 1, 30, "our helper linked to the new upstream")
    (direct,) = connect_clients(spawn, again, 1)
    mark = len(direct.events)
    ours.command("clip_copy 0 after the VM came back", "clip_copy")
    assert paste(direct, start=mark, timeout=40) == "after the VM came back"


def test_the_agent_goes_when_the_helper_dies_with_the_vm(spawn):
    """The helper is killed (no last word from it about the VM's agent) and the VM is gone
    too: the source's own loss of the VM must tell our clients the agent went."""
    upstream, server, (ours,), _direct = chain(spawn)
    ours.wait_event("agent", connected=True, timeout=60)
    wait_until(lambda: ours.command("agent", "agent")["caps0"] & CLIP, 30, "the clipboard offered")
    helper = server.stats()["source_state"]["helper_pid"]
    assert helper
    mark = len(ours.events)
    os.kill(helper, signal.SIGKILL)
    upstream.proc.kill()  # before the helper's restart (0.5 s later) could see it
    upstream.proc.wait(10)
    ours.wait_for(lambda e: e.get("event") == "agent" and not e["connected"], timeout=30, start=mark)
    assert ours.command("agent", "agent")["connected"] is False
