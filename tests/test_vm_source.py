"""`--source spice://`: a real QEMU (stock single-client SPICE) re-served to real spice-gtk clients.

The guest is a boot sector written by tests/support/qemu.py: a text screen full of
colours that echoes typed keys. What our clients decode is compared with QEMU's own
framebuffer read through QMP `screendump`, never with the server under test. A
second spice-twisted (the demo source) stands in as the upstream where QEMU's VGA
has nothing to show: a cursor shape and pointer input.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from support import processes
from support.processes import RefusingPort, as_rgb, connect_clients, free_port, wait_until
from support.qemu import ECHO_ROW_Y, Qemu, have_qemu
from support.rawclient import NotifyReader

from spice_twisted.sources.vm import WAITING_BG


@pytest.fixture
def qemu_factory(tmp_path: Path):
    if not have_qemu():
        pytest.fail("qemu-system-x86_64 is missing: run scripts/setup.sh --test")
    started: list[Qemu] = []

    def make(port: int | None = None, password: str | None = None, **kw) -> Qemu:
        q = Qemu(tmp_path, port or free_port(), password, **kw)
        started.append(q)
        return q

    yield make
    for q in started:
        q.stop()


def wait_match(vm: Qemu, clients, timeout: float = 25.0) -> np.ndarray:
    """Until every client shows exactly QEMU's screendump at once; returns it."""
    return processes.wait_match(vm.screendump, clients, "QEMU's screendump", timeout, 0.2)


def waiting_shown(client) -> bool:
    try:
        fb = as_rgb(client.framebuffer())
    except AssertionError:
        return False
    return bool((fb[3, 3] == WAITING_BG).all() and (fb[-3, -3] == WAITING_BG).all())


def test_three_clients_see_the_vm_and_one_types_into_it(spawn, qemu_factory):
    vm = qemu_factory()
    before = vm.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1:{vm.port}", "--disable-ticketing")
    clients = connect_clients(spawn, server, 3)
    shot = wait_match(vm, clients)
    assert np.array_equal(shot[:ECHO_ROW_Y], before[:ECHO_ROW_Y])
    # keys typed by one client reach the guest, which draws them: every client sees it
    for sc in (0x23, 0x17):  # h, i
        clients[1].send(f"key {sc:#x}")
    wait_until(lambda: not np.array_equal(vm.screendump()[ECHO_ROW_Y:, :18], before[ECHO_ROW_Y:, :18]), 15, "the keys on the guest")
    shot = wait_match(vm, clients)
    echo = shot[ECHO_ROW_Y:, :18]
    assert (echo == (0x00, 0x00, 0xA8)).any(axis=2).any() and (echo == (0xFF, 0xFF, 0xFF)).all(axis=2).any()  # white on blue
    assert not np.array_equal(shot[ECHO_ROW_Y:, :9], shot[ECHO_ROW_Y:, 9:18])  # two different letters
    state = server.stats()["source_state"]
    assert state["state"] == "connected" and state["size"] == [720, 400], state
    assert state["input"]["sent"] >= 4


def key_events(vm: Qemu) -> list[tuple[str, int]]:
    """(QEMU key name, down) of every key QEMU's input layer got, from its trace."""
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"input_event_key_qcode .*?key qcode (\w+), down (\d)", vm.trace())]


def test_wrong_password_shows_waiting_and_the_right_one_serves(spawn, qemu_factory, tmp_path):
    (tmp_path / "wrong").write_text("not-the-ticket\n")
    (tmp_path / "right").write_text("vm-ticket-1\n")
    for f in ("wrong", "right"):
        (tmp_path / f).chmod(0o600)
    reserved = RefusingPort()  # the VM is not there yet: clients wait for it
    port = reserved.port
    server = spawn.harness(
        "--source", f"spice://127.0.0.1:{port}", "--source-password-file", str(tmp_path / "wrong"), "--disable-ticketing"
    )
    (client,) = connect_clients(spawn, server, 1)
    notes = NotifyReader(server.port)
    wait_until(lambda: waiting_shown(client), 15, "the waiting frame")
    reserved.release()
    vm = qemu_factory(port=port, password="vm-ticket-1")
    vm.wait_booted()
    wait_until(lambda: any("refused" in t for t in notes.texts), 15, "a NOTIFY that the VM refused us")
    wait_until(lambda: waiting_shown(client), 15, "the waiting frame")
    wait_until(lambda: server.stats()["source_state"]["helper_starts"] >= 3, 20, "a few attempts")
    state = server.stats()["source_state"]
    assert state["state"] == "refused" and state["helper_crashes"] == 0, state
    log = server.stderr()
    assert log.count("refused our password") == 1, log  # one line per state change, not per attempt
    assert log.count("is not there") == 1, log  # connection refused, then the VM came up
    assert "not-the-ticket" not in log
    notes.close()
    server.close()
    good = spawn.harness(
        "--source", f"spice://127.0.0.1:{vm.port}", "--source-password-file", str(tmp_path / "right"), "--disable-ticketing"
    )
    clients = connect_clients(spawn, good, 2)
    wait_match(vm, clients)
    assert good.stats()["source_state"]["state"] == "connected"


def test_the_vm_killed_and_restarted_mid_session(spawn, qemu_factory):
    vm = qemu_factory()
    vm.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1:{vm.port}", "--disable-ticketing")
    clients = connect_clients(spawn, server, 3)
    wait_match(vm, clients)
    notes = NotifyReader(server.port)
    vm.kill()
    wait_until(lambda: any("unavailable" in t for t in notes.texts), 15, "a NOTIFY that the VM is unavailable")
    for c in clients:
        wait_until(lambda c=c: waiting_shown(c), 15, "the waiting frame")
    time.sleep(2)  # a few attempts fail (connection refused)
    assert server.stats()["source_state"]["helper_starts"] >= 3
    vm.start()
    vm.wait_booted()
    wait_match(vm, clients, timeout=30)
    wait_until(lambda: any("is back" in t for t in notes.texts), 15, "a NOTIFY that the VM is back")
    notes.close()
    log = server.stderr()
    assert log.count("was lost") == 1 and log.count("back, serving it again") == 1, log
    assert all(not c.channel_events("main") or "closed" not in c.channel_events("main") for c in clients)
    assert len(server.stats()["clients"]) == 4  # the three viewers and the NOTIFY reader
    # input reaches the new VM
    clients[2].send("key 0x2d")  # x
    wait_until(lambda: ("x", 1) in key_events(vm), 10, "the key in QEMU's trace")
    wait_match(vm, clients)


def test_a_crashed_helper_is_restarted(spawn, qemu_factory):
    vm = qemu_factory()
    vm.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1:{vm.port}", "--disable-ticketing")
    clients = connect_clients(spawn, server, 2)
    wait_match(vm, clients)
    pid = server.stats()["source_state"]["helper_pid"]
    assert pid > 0
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: server.stats()["source_state"]["helper_crashes"] == 1, 10, "the crash noticed")
    wait_until(lambda: server.stats()["source_state"]["state"] == "connected", 20, "served again")
    state = server.stats()["source_state"]
    assert state["helper_pid"] not in (0, pid) and state["helper_starts"] == 2, state
    clients[0].send("key 0x1e")  # a
    wait_until(lambda: ("a", 1) in key_events(vm), 10, "the key in QEMU's trace")
    wait_match(vm, clients)
    assert "the spice-gtk helper ended (signal 9)" in server.stderr()


def test_keys_buttons_motion_and_leds_reach_qemu(spawn, qemu_factory):
    vm = qemu_factory()
    vm.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1:{vm.port}", "--disable-ticketing")
    typist, watcher, viewer = connect_clients(spawn, server, 3)
    wait_until(lambda: server.stats()["source_state"]["state"] == "connected", 20, "connected")
    # a view-only client's keys never reach the VM
    server.view_only(server.stats()["clients"][2]["id"], True)
    viewer.send("key 0x10")  # q
    # no tablet: QEMU's SPICE is in server mouse mode, so our absolute positions go up as motion
    typist.send("position 100 100 0")
    typist.send("position 130 90 0")
    typist.send("press 1 1")
    typist.send("release 1 0")
    wait_until(lambda: re.search(r"input_event_btn .*button left, down 0", vm.trace()), 10, "the click in QEMU")
    assert re.search(r"input_event_rel .*axis x, value 30\n.*axis y, value -10", vm.trace()), vm.trace()[-2000:]
    # Caps Lock typed in one client: the guest BIOS lights it, and every client is told
    typist.send("key 0x3a")
    wait_until(lambda: "ledstate 4" in vm.trace(), 10, "the guest's caps LED")
    watcher.wait_event("modifiers", value=4)
    # Num Lock reported by a client (its keyboard's LEDs on focus) goes up as a lock change
    watcher.send("locks 6")
    wait_until(lambda: "ledstate 6" in vm.trace(), 10, "the guest's num LED")
    # a key held by a client that leaves is released
    typist.send("keydown 0x2a")  # left shift
    wait_until(lambda: ("shift", 1) in key_events(vm), 10, "shift down")
    typist.close()
    wait_until(lambda: ("shift", 0) in key_events(vm), 10, "shift released after its client left")
    assert "q" not in [k for k, _ in key_events(vm)]
    assert server.stats()["source_state"]["released_for_departed"] == 1


def test_cursor_and_pointer_through_a_chained_spice_server(spawn):
    """Upstream: another spice-twisted (the demo, stopped ball): its arrow and I-beam cursor
    shapes and its client-mode pointer, driven by a client of ours, draw a stroke upstream."""
    upstream = spawn.harness(paused=True)
    server = spawn.harness("--source", f"spice://127.0.0.1:{upstream.port}", "--disable-ticketing")
    (client,) = connect_clients(spawn, server, 1)
    client.wait_event("cursor-set", width=16, height=24)  # the demo's arrow
    wait_until(lambda: server.stats()["source_state"]["upstream_mouse_mode"] == 2, 10, "client mode upstream")
    before = as_rgb(upstream.framebuffer())
    client.send("drag 200 450 400 470 20")
    client.send("position 300 700 0")  # over the demo's text box: the I-beam
    client.wait_event("cursor-set", width=9, height=20)
    expect = as_rgb(upstream.framebuffer())
    wait_until(lambda: processes.mismatch(client, expect) == 0, 15, "our client showing the upstream's stroke")
    assert np.any(expect[445:476, 195:406] != before[445:476, 195:406])  # the stroke is the upstream's
    up = upstream.stats()["clients"]
    assert len(up) == 1 and up[0]["input_events"] >= 3  # one upstream client, us (a loaded helper sends merged motions)


def test_a_vm_on_a_tls_port_checked_against_its_ca(spawn, qemu_factory, certs, tmp_path):
    x509 = tmp_path / "x509"
    x509.mkdir()
    for name, src in (("ca-cert.pem", "ca"), ("server-cert.pem", "cert"), ("server-key.pem", "key")):
        (x509 / name).write_bytes(certs[src].read_bytes())
    vm = qemu_factory(x509_dir=x509)
    vm.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1?tls-port={vm.port}", "--source-ca-file", str(certs["ca"]), "--disable-ticketing")
    clients = connect_clients(spawn, server, 2)
    wait_match(vm, clients)
    assert server.stats()["source_state"]["upstream"] == f"127.0.0.1 (tls-port {vm.port})"
